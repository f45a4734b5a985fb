"""What every API's monitoring shares: the alarm topic, the period, alarms that notify it, dashboard sections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.encryption import stack_key
from infra.constructs.python_function import metrics_namespace

PERIOD = Duration.minutes(5)
DASHBOARD_INTERVAL = Duration.hours(3)


class AlarmTopic(sns.Topic):
    """The stack's encrypted, TLS-only SNS topic every alarm notifies (and `alarmEmail`, when set, reads)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        # CloudWatch cannot publish to a topic encrypted with the AWS managed SNS key: it needs a key
        # whose policy lets the CloudWatch service use it.
        key = stack_key(scope)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        super().__init__(scope, construct_id, display_name="gpt-oss alarms", master_key=key, enforce_ssl=True)
        if config.alarm_email is not None:
            self.add_subscription(subscriptions.EmailSubscription(config.alarm_email))


class Alarms(Construct):
    """A group of alarms that notify the alarm topic when they fire and when they recover.

    Every alarm treats missing data as not breaching: no traffic is no problem. `all` lists them in order.
    """

    def __init__(self, scope: Construct, construct_id: str, *, topic: AlarmTopic) -> None:
        super().__init__(scope, construct_id)
        self._action = cloudwatch_actions.SnsAction(topic)
        self.all: list[cloudwatch.Alarm] = []

    def count(
        self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        """An alarm for any period whose count reaches the threshold."""
        return self.above(
            construct_id,
            metric,
            threshold,
            description,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def above(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm when the metric is above the threshold (in `datapoints_to_alarm` of `evaluation_periods`)."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.all.append(alarm)
        return alarm


class Dashboard(cloudwatch.Dashboard):
    """A dashboard of titled sections, each a few rows of widgets (24 units wide)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id, default_interval=DASHBOARD_INTERVAL)

    def add_section(self, title: str, *rows: Sequence[cloudwatch.IWidget]) -> None:
        self.add_widgets(cloudwatch.TextWidget(markdown=f"## {title}", width=24, height=1))
        for row in rows:
            self.add_widgets(*row)


def custom_metric(
    config: DeploymentConfig, metric_name: str, dimensions: Mapping[str, str], label: str
) -> cloudwatch.Metric:
    """A count of the stage's namespace (functions publish through Powertools EMF), summed per period."""
    return cloudwatch.Metric(
        namespace=metrics_namespace(config),
        metric_name=metric_name,
        dimensions_map=dict(dimensions),
        statistic=cloudwatch.Stats.SUM,
        period=PERIOD,
        label=label,
    )


def service_metric(config: DeploymentConfig, service: str, metric_name: str, label: str) -> cloudwatch.Metric:
    """A count a function publishes through Powertools: dimension `service` = its service name."""
    return custom_metric(config, metric_name, {"service": service}, label)
