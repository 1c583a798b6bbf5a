import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "onnx", "transformers", "openvino", "ray", "tokenizers", "numpy.linalg")


def test_help_imports_no_heavy_backend():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from spanqa.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_command_has_help():
    from click.testing import CliRunner

    from spanqa.cli import main

    for name in main.commands:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage: " in result.output


def test_python_m_spanqa():
    out = subprocess.run([sys.executable, "-m", "spanqa", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "spanqa, version 0.1.0"
