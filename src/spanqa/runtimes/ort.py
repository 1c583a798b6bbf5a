"""ONNX Runtime on the CPU (and the session code the GPU runtimes share)."""

from __future__ import annotations

from spanqa.errors import InferenceError, missing_backend
from spanqa.models.package import INPUT_NAMES, ModelPackage
from spanqa.sysinfo import passive_wait


def onnxruntime(extra: str = "cpu"):
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_backend("onnxruntime", extra) from None
    return ort


class OrtRuntime:
    """One ONNX Runtime session; ``providers`` picks the execution provider (CPU by default)."""

    def __init__(self, package: ModelPackage, options, providers: list | None = None, extra: str = "cpu"):
        ort = onnxruntime(extra)
        so = ort.SessionOptions()
        if options.threads:
            # Set explicitly: ORT sizes its pool from the machine's cores otherwise, whatever
            # OMP_NUM_THREADS or a container's CPU quota says.
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if passive_wait():
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.requested = providers or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(package.model_path), so, providers=self.requested)
        except Exception as exc:
            raise InferenceError(f"{package.model_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
        names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in INPUT_NAMES if n not in names]
        if missing:
            raise InferenceError(
                f"{package.model_path}: model lacks input(s) {', '.join(missing)}; export it with 'spanqa export'"
            )
        shape = next(i.shape for i in self.session.get_inputs() if i.name == "input_ids")
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        self.seq_len = shape[1] if isinstance(shape[1], int) else None
        self.provider = self.session.get_providers()[0]
        self.name = {
            "CUDAExecutionProvider": "onnxruntime-cuda",
            "TensorrtExecutionProvider": "onnxruntime-tensorrt",
        }.get(self.provider, "onnxruntime-cpu")
        self._output_names = [o.name for o in self.session.get_outputs()][:2]

    def run(self, input_ids, token_type_ids, attention_mask):
        feeds = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        start, end = self.session.run(self._output_names, feeds)
        return start, end

    def info(self) -> dict:
        import onnxruntime as ort

        options = self.session.get_session_options()
        return {
            "name": self.name,
            "backend": "onnxruntime",
            "version": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": options.intra_op_num_threads or None,  # 0 = ORT's default
        }

    def close(self) -> None:
        self.session = None


def load_cpu(package: ModelPackage, options) -> OrtRuntime:
    return OrtRuntime(package, options)
