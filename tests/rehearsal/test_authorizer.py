"""The rehearsal's IAM authorizer: action and resource of each request, explicit Deny first, List calls need `*`."""

from __future__ import annotations

from rehearsal.cloud import evaluate, request_resources

GROUP = "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/mlops-dev-abalone"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-dev-abalone/1"


def _policy(*statements):
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


def test_list_model_packages_needs_a_star_resource():
    """Defect 14: ListModelPackages scoped to the group's ARN is denied (List calls have no resource type)."""
    resources = request_resources("sagemaker", "sagemaker:ListModelPackages", "/",
                                  {}, b'{"ModelPackageGroupName": "mlops-dev-abalone"}')
    assert resources == [["*"]]
    scoped = _policy({"Effect": "Allow", "Action": "sagemaker:ListModelPackages", "Resource": [GROUP, f"{GROUP}/*"]})
    assert not evaluate(scoped, "sagemaker:ListModelPackages", resources)
    star = _policy({"Effect": "Allow", "Action": "sagemaker:ListModelPackages", "Resource": "*"})
    assert evaluate(star, "sagemaker:ListModelPackages", resources)


def test_resource_arns_are_matched_with_wildcards_and_deny_wins():
    body = f'{{"ModelPackageName": "{PACKAGE}"}}'.encode()
    resources = request_resources("sagemaker", "sagemaker:DescribeModelPackage", "/", {}, body)
    assert resources == [[PACKAGE]]
    allow = {"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "arn:aws:sagemaker:*:*:model-package/mlops-dev-abalone/*"}
    assert evaluate(_policy(allow), "sagemaker:DescribeModelPackage", resources)
    other = {"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "arn:aws:sagemaker:*:*:model-package/other/*"}
    assert not evaluate(_policy(other), "sagemaker:DescribeModelPackage", resources)
    deny = {"Effect": "Deny", "Action": "sagemaker:*", "Resource": "*"}
    assert not evaluate(_policy(allow, deny), "sagemaker:DescribeModelPackage", resources)


def test_log_streams_and_function_qualifiers():
    logs = request_resources("logs", "logs:PutLogEvents", "/", {},
                             b'{"logGroupName": "/aws-glue/crawlers", "logStreamName": "c1"}')
    assert logs == [["arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/crawlers:log-stream:c1",
                     "arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/crawlers"]]
    nameless = {"Effect": "Allow", "Action": "logs:PutLogEvents",
                "Resource": "arn:aws:logs:us-east-1:123456789012:log-group"}  # defect 10: no group name
    assert not evaluate(_policy(nameless), "logs:PutLogEvents", logs)
    named = {"Effect": "Allow", "Action": "logs:PutLogEvents",
             "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/crawlers:*"}
    assert evaluate(_policy(named), "logs:PutLogEvents", logs)
    invoke = request_resources("lambda", "lambda:InvokeFunction",
                               "/2015-03-31/functions/mlops-dev-abalone-staging/invocations?Qualifier=live", {}, b"")
    assert invoke == [["arn:aws:lambda:us-east-1:123456789012:function:mlops-dev-abalone-staging:live"]]


def test_an_underived_resource_needs_the_action_on_some_resource():
    assert request_resources("glue", "glue:GetTable", "/", {}, b"{}") is None
    assert evaluate(_policy({"Effect": "Allow", "Action": "glue:GetTable", "Resource": "arn:aws:glue:*:*:table/x/*"}),
                    "glue:GetTable", None)
    assert not evaluate(_policy({"Effect": "Allow", "Action": "glue:GetDatabase", "Resource": "*"}),
                        "glue:GetTable", None)


def test_catalog_operations_need_the_catalog_the_database_and_the_table():
    """"Specifying AWS Glue resource ARNs": GetTable and partition calls are authorized on all three."""
    table = request_resources("glue", "glue:GetTable", "/", {}, b'{"DatabaseName": "db", "Name": "t"}')
    glue = "arn:aws:glue:us-east-1:123456789012:"
    assert table == [[f"{glue}catalog"], [f"{glue}database/db"], [f"{glue}table/db/t"]]
    partitions = request_resources("glue", "glue:BatchCreatePartition", "/", {},
                                   b'{"DatabaseName": "db", "TableName": "t", "PartitionInputList": []}')
    assert partitions == table
    without_table = {"Effect": "Allow", "Action": "glue:GetTable", "Resource": [f"{glue}catalog", f"{glue}database/db"]}
    assert not evaluate(_policy(without_table), "glue:GetTable", table)
    assert evaluate(_policy({**without_table, "Resource": [f"{glue}catalog", f"{glue}database/db", f"{glue}table/db/*"]}),
                    "glue:GetTable", table)
