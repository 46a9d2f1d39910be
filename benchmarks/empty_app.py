#!/usr/bin/env python3
"""The baseline of benchmarks/synth_breakdown.py: one stack with one resource, synthesized by the same CDK CLI and
Python. What any CDK Python app pays (node, the CLI, the jsii kernel, loading aws-cdk-lib) before its own work."""

import aws_cdk as cdk
from aws_cdk import aws_sns as sns

app = cdk.App()
stack = cdk.Stack(app, "EmptyBaseline")
sns.Topic(stack, "Topic")
app.synth()
