"""Monitoring of each API: its alarms, which notify the stack's alarm topic, and its own dashboard.

`common` holds what every API's monitoring shares (the alarm topic, the period, how an alarm notifies and how
a dashboard section is laid out); `chat_api` and `batch_pipeline` hold each API's thresholds, metrics, alarms
and dashboard.
"""
