"""The job steps of a pipeline execution as SageMaker runs them: Processing and QualityCheck jobs under a stand-in
``/opt/ml``, Training in the framework container's script mode. See :mod:`rehearsal.pipeline`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Optional

from rehearsal.assembly import RehearsalError
from rehearsal.context import OPT_ML, clean_env, download_s3_prefix, opt_ml, split_s3_uri, upload_dir
from rehearsal.pipeline_definition import StepFailure, as_text
from rehearsal import sagemaker_standins as standins

MAX_JOB_SECONDS = 600  # the rehearsal's cap on one job (the definition's MaxRuntimeInSeconds applies if lower)
# IDs a VpcConfig may name besides the deployed stacks' own subnets and groups: a landing zone's, written in the config.
_LITERAL_IDS = {"Subnets": re.compile(r"^subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?$"),
                "SecurityGroupIds": re.compile(r"^sg-[0-9a-f]{8}(?:[0-9a-f]{9})?$")}


class JobSteps:
    """Processing, QualityCheck and Training steps (a mixin of the execution, which holds the rehearsal, the stand-in
    cloud, the execution ID and the pipeline role, and authorizes the jobs it starts)."""

    # network --------------------------------------------------------------------------------------------------------
    def _network_ids(self) -> dict[str, set[str]]:
        """The subnets and security groups of the assembly's stacks, as the resolver names them (what an imported
        ``subnet-ids`` / ``workload-sg-id`` export resolves to)."""
        if getattr(self, "_known_network", None) is None:
            resolver = self.rh.assembly.resolver
            known: dict[str, set[str]] = {"Subnets": set(), "SecurityGroupIds": set()}
            for stack in self.rh.assembly.stacks.values():
                for logical in stack.of_type("AWS::EC2::Subnet"):
                    known["Subnets"].add(resolver.ref(stack, logical))
                for logical in stack.of_type("AWS::EC2::SecurityGroup"):
                    known["SecurityGroupIds"].add(resolver.get_att(stack, logical, "GroupId"))
            self._known_network = known
        return self._known_network

    def _check_network(self, step: str, kind: str, args: dict) -> bool:
        """Whether the job runs with network isolation; a VpcConfig (``VpcConfig`` of a training job,
        ``NetworkConfig.VpcConfig`` of a processing job) must name at least one subnet and one security group, each of
        the deployed stacks (or a literal landing-zone ID): a placeholder or an empty list fails as CreateJob would."""
        network = args if kind == "Training" else (args.get("NetworkConfig") or {})
        vpc = network.get("VpcConfig")
        if vpc is not None:
            known = self._network_ids()
            for field, what in (("Subnets", "subnet"), ("SecurityGroupIds", "security group")):
                ids = vpc.get(field) or []
                if not ids:
                    raise StepFailure(f"{step}: ValidationException: VpcConfig.{field} is empty (a job in a VPC needs "
                                      f"at least one {what})")
                for value in ids:
                    if not isinstance(value, str) or (value not in known[field] and not _LITERAL_IDS[field].match(value)):
                        raise StepFailure(
                            f"{step}: VpcConfig.{field} names {value!r}, which is no {what} of the deployed stacks "
                            f"(they have {sorted(known[field]) or 'none'}) nor a {what} ID: the job cannot start there"
                        )
        isolated = network.get("EnableNetworkIsolation")
        return isolated is True or str(isolated).lower() == "true"

    def _job_credentials(self, isolated: bool, job_role: str) -> dict[str, str]:
        """The job role's credentials and the stand-in's endpoint for the container; none with network isolation (the
        container reaches nothing: SageMaker stages its inputs and uploads its outputs)."""
        return {} if isolated else self.cloud.environ(job_role)

    def _stage_inputs(self, step: str, s3: Any, inputs: list[dict], root: Path) -> None:
        asset_buckets = {a.bucket for a in self.rh.assembly.assets()}
        for item in inputs:
            source = item.get("S3Input")
            if source is None:
                raise StepFailure(f"{step}: input {item.get('InputName')} is not an S3Input (not rehearsed)")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise StepFailure(f"{step}: input {item.get('InputName')}: S3DataType {source['S3DataType']} "
                                  "is not rehearsed")
            uri = source["S3Uri"]
            if split_s3_uri(uri)[0] in asset_buckets:
                try:
                    self.cloud.upload_asset(uri)
                except RehearsalError as exc:
                    raise StepFailure(f"{step}: input {item.get('InputName')}: {exc} (cdk deploy uploads nothing "
                                      "there)") from None
            local = container_path(step, source["LocalPath"], root)
            try:
                download_s3_prefix(s3, uri, local)
            except RehearsalError as exc:
                raise StepFailure(f"{step}: input {item.get('InputName')}: {exc}") from None
            except Exception as exc:
                raise StepFailure(f"{step}: downloading input {item.get('InputName')} ({uri}) with the job role "
                                  f"failed: {exc}") from None

    def _upload_outputs(self, step: str, s3: Any, outputs: list[dict], root: Path) -> dict[str, str]:
        uploaded = {}
        for item in outputs:
            target = item.get("S3Output")
            if target is None:
                continue
            local = container_path(step, target["LocalPath"], root)
            local.mkdir(parents=True, exist_ok=True)
            try:
                upload_dir(s3, local, target["S3Uri"])
            except Exception as exc:
                raise StepFailure(f"{step}: uploading output {item['OutputName']} to {target['S3Uri']} with the job "
                                  f"role failed: {exc}") from None
            uploaded[item["OutputName"]] = target["S3Uri"]
        return uploaded

    def _run_process(
        self, step: str, command: list[str], env: dict[str, str], root: Path, timeout: float, cwd: str
    ) -> None:
        """Run the container's command with ``root`` as its ``/opt/ml``: in a private mount namespace when the
        rehearsal may create one (``unshare -m``, as root), so concurrent rehearsals never see each other's
        ``/opt/ml``; else with ``context.opt_ml``'s process-wide symlink."""
        try:
            if _private_opt_ml():
                script = 'mount -t tmpfs rehearsal /opt && mkdir /opt/ml && mount --bind "$0" /opt/ml && cd "$1" ' \
                         '&& shift && exec "$@"'
                wrapped = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(root), cwd, *command]
                proc = subprocess.run(wrapped, env=env, capture_output=True, text=True, timeout=timeout)
            else:
                with opt_ml(root):
                    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StepFailure(f"{step}: the job exceeded {timeout:.0f}s (MaxRuntimeInSeconds or the rehearsal cap)")
        log = self.rh.workdir / "pipeline-logs" / f"{self.execution_id}-{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(command)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
            raise StepFailure(f"{step}: AlgorithmError: {' '.join(command[:2])} exited {proc.returncode} "
                              f"(log {log}):\n{tail}")

    def _processing(self, step: str, args: dict) -> tuple[dict, dict]:
        job_role = args.get("RoleArn") or self.role_arn
        isolated = self._check_network(step, "Processing", args)
        job_name, job_arn = self._start_job(step, "processing", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        app = args.get("AppSpecification", {})
        entrypoint = list(app.get("ContainerEntrypoint") or [])
        if not entrypoint:
            raise StepFailure(f"{step}: no ContainerEntrypoint: the image's own entry point is not rehearsed")
        command = entrypoint + [as_text(a) for a in app.get("ContainerArguments") or []]
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        if True:  # staged under root, which is /opt/ml for the job's process
            self._stage_inputs(step, s3, args.get("ProcessingInputs", []), root)
            for item in outputs:
                if "S3Output" in item:
                    container_path(step, item["S3Output"]["LocalPath"], root).mkdir(parents=True, exist_ok=True)
            if command[0] in ("python3", "python"):
                command[0] = self.rh.python
            for arg in command[1:2] if command[0] == self.rh.python else command[:1]:
                local = container_path(step, arg, root) if arg.startswith(str(OPT_ML)) else None
                if local is not None and not local.exists():
                    staged = sorted(
                        f"{Path(arg).parent}/{p.name}" for p in local.parent.glob("*")
                    ) if local.parent.exists() else []
                    raise StepFailure(
                        f"{step}: ContainerEntrypoint runs {arg}, which the job's inputs did not create (the "
                        f"directory holds {staged or 'nothing'}): a processing input downloads an object under its "
                        "own name, so the entry point must name the asset object (<hash>.py), not the source file"
                    )
            env = clean_env({**{k: as_text(v) for k, v in (args.get("Environment") or {}).items()},
                             **self._job_credentials(isolated, job_role)})
            timeout = min(MAX_JOB_SECONDS, (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400))
            self._run_process(step, command, env, root, timeout, cwd="/")
            uploaded = self._upload_outputs(step, s3, outputs, root)
        properties = {
            "ProcessingJobName": job_name,
            "ProcessingJobArn": job_arn,
            "ProcessingJobStatus": "Completed",
            "AppSpecification": app,
            "Environment": args.get("Environment") or {},
            "ProcessingInputs": args.get("ProcessingInputs", []),
            "ProcessingOutputConfig": {
                **(args.get("ProcessingOutputConfig") or {}),
                "Outputs": {o["OutputName"]: o for o in outputs},
            },
            "RoleArn": job_role,
        }
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role,
                                                   "network_isolation": isolated}
        return properties, uploaded

    # quality check (Model Monitor analyzer stand-in) -----------------------------------------------------------------
    def _quality_check(self, step: str, definition: dict, args: dict) -> tuple[dict, dict]:
        check_type = definition.get("CheckType")
        if check_type != "DATA_QUALITY":
            raise StepFailure(f"{step}: QualityCheck {check_type} is not rehearsed (DATA_QUALITY only)")
        if definition.get("SkipCheck") is False:
            raise StepFailure(f"{step}: the drift check (SkipCheck false) is not rehearsed")
        job_role = args.get("RoleArn") or self.role_arn
        self._check_network(step, "QualityCheck", args)  # the analyzer stand-in runs in-process: it reaches nothing
        job_name, job_arn = self._start_job(step, "processing", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        env = args.get("Environment") or {}
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        if True:  # staged under root, which is /opt/ml for the job's process
            self._stage_inputs(step, s3, args.get("ProcessingInputs", []), root)
            source = container_path(step, env.get("dataset_source", ""), root)
            if not source.exists():
                raise StepFailure(f"{step}: dataset_source {env.get('dataset_source')} was not created by the inputs")
            try:
                dataset_format = json.loads(env.get("dataset_format", "{}"))
            except ValueError:
                raise StepFailure(f"{step}: dataset_format {env.get('dataset_format')!r} is not JSON") from None
            out_dir = container_path(step, env.get("output_path", "/opt/ml/processing/output"), root)
            try:
                statistics = standins.data_quality_baseline(source, dataset_format, out_dir)
            except RehearsalError as exc:
                raise StepFailure(f"{step}: {exc}") from None
            uploaded = self._upload_outputs(step, s3, outputs, root)
        out_uri = next(
            (o["S3Output"]["S3Uri"] for o in outputs
             if "S3Output" in o and Path(o["S3Output"]["LocalPath"]) == Path(env.get("output_path", ""))),
            None,
        )
        if out_uri is None:
            raise StepFailure(f"{step}: no output uploads output_path {env.get('output_path')}")
        stats_uri, constraints_uri = f"{out_uri.rstrip('/')}/statistics.json", f"{out_uri.rstrip('/')}/constraints.json"
        register_new = definition.get("RegisterNewBaseline", False)
        properties = {
            "CalculatedBaselineStatistics": stats_uri,
            "CalculatedBaselineConstraints": constraints_uri,
            "BaselineUsedForDriftCheckStatistics": stats_uri if register_new else definition.get(
                "SuppliedBaselineStatistics"),
            "BaselineUsedForDriftCheckConstraints": constraints_uri if register_new else definition.get(
                "SuppliedBaselineConstraints"),
        }
        self.facts["baseline"] = {"dataset_format": dataset_format, "statistics": statistics}
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role}
        return properties, uploaded

    # training --------------------------------------------------------------------------------------------------------
    def _training(self, step: str, args: dict) -> tuple[dict, dict]:
        job_role = args.get("RoleArn") or self.role_arn
        raw_hps = {k: as_text(v) for k, v in (args.get("HyperParameters") or {}).items()}
        hps = standins.deserialize_hyperparameters(raw_hps)
        program = hps.get("sagemaker_program")
        if not program:
            raise StepFailure(
                f"{step}: no sagemaker_program hyperparameter: the framework image runs in algorithm mode "
                "(its built-in algorithm), not the platform's training script"
            )
        submit = hps.get("sagemaker_submit_directory")
        isolated = self._check_network(step, "Training", args)
        channels = [c["ChannelName"] for c in args.get("InputDataConfig", [])]
        # The toolkit takes the source tarball from S3 or, as the SDK stages it for an isolated job, from a file of an
        # input channel (/opt/ml/input/data/<channel>/<object name>: SageMaker downloads it, the container does not).
        channel_file = isinstance(submit, str) and submit.startswith(f"{OPT_ML}/input/data/")
        if isolated and not channel_file:
            raise StepFailure(
                f"{step}: EnableNetworkIsolation: the training container cannot download sagemaker_submit_directory "
                f"{submit!r}; it must be the source tarball as an input channel downloads it, "
                f"{OPT_ML}/input/data/<channel>/<the asset's object name>"
            )
        if not channel_file and (not submit or not str(submit).startswith("s3://")):
            raise StepFailure(f"{step}: sagemaker_submit_directory {submit!r} is not an S3 URI of the source tarball")
        if channel_file and Path(submit).relative_to(f"{OPT_ML}/input/data").parts[0] not in channels:
            raise StepFailure(f"{step}: sagemaker_submit_directory {submit} is under no input channel of the job "
                              f"({channels})")
        algo = args.get("AlgorithmSpecification") or {}
        if algo.get("TrainingInputMode", "File") != "File":
            raise StepFailure(f"{step}: TrainingInputMode {algo['TrainingInputMode']} is not rehearsed")
        job_name, job_arn = self._start_job(step, "training", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        if True:  # staged under root, which is /opt/ml for the job's process
            for channel in args.get("InputDataConfig", []):
                source = channel["DataSource"]["S3DataSource"]
                item = {"InputName": channel["ChannelName"], "S3Input": {
                    "S3Uri": source["S3Uri"], "S3DataType": source.get("S3DataType", "S3Prefix"),
                    "LocalPath": f"{OPT_ML}/input/data/{channel['ChannelName']}"}}
                self._stage_inputs(step, s3, [item], root)
            if channel_file:  # the toolkit extracts the channel's file to /opt/ml/code
                tarball = self._channel_file(step, submit, root)
            else:  # the toolkit downloads the submit directory with the job's credentials and extracts it
                tarball = self._download_submit_directory(step, s3, submit)
            code = root / "code"
            code.mkdir(parents=True, exist_ok=True)
            try:
                with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
                    tar.extractall(code, filter="data")
            except tarfile.TarError as exc:
                raise StepFailure(f"{step}: sagemaker_submit_directory {submit} is not a tar.gz: {exc}") from None
            if not (code / program).is_file():
                raise StepFailure(f"{step}: sagemaker_program {program} is not in the source tarball {submit} "
                                  f"(it holds {sorted(p.name for p in code.iterdir())})")
            config = root / "input" / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "hyperparameters.json").write_text(json.dumps(raw_hps))
            (config / "inputdataconfig.json").write_text(json.dumps(
                {c["ChannelName"]: {k: v for k, v in c.items() if k != "DataSource"} for c in args.get("InputDataConfig", [])}))
            (config / "resourceconfig.json").write_text(json.dumps(
                {"current_host": standins.CURRENT_HOST, "hosts": [standins.CURRENT_HOST]}))
            for sub in ("model", "output/data", "output/intermediate"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            env = clean_env({
                **{k: as_text(v) for k, v in (args.get("Environment") or {}).items()},
                **standins.training_environment(channels, hps, program, submit, job_name),
                **self._job_credentials(isolated, job_role),
            })
            command = [self.rh.python, program, *standins.hyperparameter_args(standins.user_hyperparameters(hps))]
            timeout = min(MAX_JOB_SECONDS, (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400))
            self._run_process(step, command, env, root, timeout, cwd=f"{OPT_ML}/code")
            model_tar = _tar_gz(root / "model")
            output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            model_uri = f"{output_path}/{job_name}/output/model.tar.gz"
            bucket, key = split_s3_uri(model_uri)
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=model_tar)
                if any((root / "output" / "data").iterdir()):
                    s3.put_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"),
                                  Body=_tar_gz(root / "output" / "data"))
            except Exception as exc:
                raise StepFailure(f"{step}: uploading {model_uri} with the job role failed: {exc}") from None
            metadata_path = root / "model" / "model_metadata.json"
            if metadata_path.exists():
                self.facts["model_metadata"] = json.loads(metadata_path.read_text())
        properties = {
            "TrainingJobName": job_name,
            "TrainingJobArn": job_arn,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "OutputDataConfig": args.get("OutputDataConfig"),
            "HyperParameters": raw_hps,
            "AlgorithmSpecification": algo,
            "RoleArn": job_role,
        }
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role,
                                                   "network_isolation": isolated}
        return properties, {"model": model_uri}

    def _channel_file(self, step: str, submit: str, root: Path) -> bytes:
        local = container_path(step, submit, root)
        if not local.is_file():
            staged = sorted(p.name for p in local.parent.iterdir()) if local.parent.is_dir() else []
            raise StepFailure(
                f"{step}: sagemaker_submit_directory {submit} is not a file the input channels created (the directory "
                f"holds {staged or 'nothing'}): a channel downloads an object under its own name, so the path must "
                "name the source tarball's asset object (<hash>.gz), not sourcedir.tar.gz"
            )
        return local.read_bytes()

    def _download_submit_directory(self, step: str, s3: Any, submit: str) -> bytes:
        if split_s3_uri(submit)[0] in {a.bucket for a in self.rh.assembly.assets()}:
            try:
                self.cloud.upload_asset(submit)
            except RehearsalError as exc:
                raise StepFailure(f"{step}: sagemaker_submit_directory: {exc}") from None
        bucket, key = split_s3_uri(submit)
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise StepFailure(f"{step}: downloading sagemaker_submit_directory {submit} with the job role "
                              f"failed: {exc}") from None


_PRIVATE_OPT_ML: Optional[bool] = None


def _private_opt_ml() -> bool:
    """Whether a job process can get its own /opt/ml in a private mount namespace (probed once)."""
    global _PRIVATE_OPT_ML
    if _PRIVATE_OPT_ML is None:
        import shutil

        probe = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs rehearsal /opt && mkdir /opt/ml"],
            capture_output=True,
        ) if shutil.which("unshare") else None
        _PRIVATE_OPT_ML = probe is not None and probe.returncode == 0
    return _PRIVATE_OPT_ML


def container_path(step: str, path: str, root: Path) -> Path:
    p = Path(path)
    try:
        relative = p.relative_to(OPT_ML)
    except ValueError:
        raise StepFailure(f"{step}: container path {path} is outside /opt/ml (not rehearsed)") from None
    return root / relative


def _tar_gz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buf.getvalue()
