"""Starting the app: python app.py or czsl-models app [--backbone SPEC] [--device cpu|cuda] [--host ADDR] [--port N]
[--share] [--no-mcp].

Every option also reads an environment variable (CZSL_BACKBONE, CZSL_DEVICE, GRADIO_SERVER_NAME,
GRADIO_SERVER_PORT, GRADIO_SHARE, GRADIO_MCP_SERVER), so a Hugging Face Space configures it without flags. Other
settings: CZSL_WEIGHTS_DIR (checkpoints, default weights/), CZSL_DATA_DIR (unpacked dataset zips, default
runs/datasets), CZSL_PREDICT_CONCURRENCY (predictions at once, default 4), CZSL_PREDICT_BATCH_WAIT_MS (how
long a prediction waits for others to share its backbone pass, default 5; 0: off) and CZSL_ALLOW_SERVER_PATHS
(training on server folders; on by default except on a Space). --head-precision / CZSL_HEAD_PRECISION
sets MSCI's row-head precision at inference (auto, float32, bfloat16; czsl_models/backbones/precision.py);
--backbone-precision / CZSL_BACKBONE_PRECISION the image backbone's (auto, float32, bfloat16, float16, int8).
--checkpoints / CZSL_CHECKPOINTS lists Hub checkpoints (owner/name[@revision], comma separated) to fetch at
start and offer in Predict, Compare and Evaluate; the first one is Predict's default. The MCP server (tools: the
documented API of czsl_models/ui/api.py) is on unless --no-mcp or GRADIO_MCP_SERVER=false."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def mcp_wanted() -> bool:
    """The MCP server is on unless GRADIO_MCP_SERVER (Gradio's own switch) says false."""
    return os.environ.get("GRADIO_MCP_SERVER", "").strip().lower() not in ("0", "false", "no", "off")


def mcp_available() -> bool:
    """Whether the mcp package (gradio's mcp extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("mcp") is not None


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Command-line options, defaulting to the environment."""
    parser = argparse.ArgumentParser(prog=prog, description="Compositional zero-shot recognition app (MSCI, Refiner, "
                                                             "SVIP), with its API and MCP server.")
    parser.add_argument("--backbone", default=os.environ.get("CZSL_BACKBONE"),
                        help="OpenCLIP backbone: ARCH:TAG, hf-hub:org/repo, a local folder or tiny "
                             "(default $CZSL_BACKBONE or ViT-L-14-quickgelu:openai)")
    parser.add_argument("--device", default=os.environ.get("CZSL_DEVICE"),
                        help="cpu, cuda or cuda:N (default $CZSL_DEVICE, else CUDA when present)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"),
                        help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ["GRADIO_SERVER_PORT"])
                        if os.environ.get("GRADIO_SERVER_PORT") else None,
                        help="port (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--head-precision", default=os.environ.get("CZSL_HEAD_PRECISION"),
                        help="MSCI's row head at inference: auto (bfloat16 where native), float32 or bfloat16 "
                             "(default $CZSL_HEAD_PRECISION, else auto)")
    parser.add_argument("--backbone-precision", default=os.environ.get("CZSL_BACKBONE_PRECISION"),
                        help="the image backbone's precision: auto (bfloat16 on a CPU that has it natively, half "
                             "precision on CUDA, else float32), float32, bfloat16, float16 (CUDA) or int8 (CPU) "
                             "(default $CZSL_BACKBONE_PRECISION, else auto)")
    parser.add_argument("--checkpoints", default=os.environ.get("CZSL_CHECKPOINTS"),
                        help="Hub checkpoints to offer, owner/name[@revision] comma separated; the first is "
                             "Predict's default (default $CZSL_CHECKPOINTS)")
    parser.add_argument("--share", action="store_true", default=_env_flag("GRADIO_SHARE"),
                        help="also serve through a public gradio.live link")
    parser.add_argument("--no-mcp", dest="mcp", action="store_false", default=mcp_wanted(),
                        help="do not serve the MCP server at /gradio_api/mcp/ (also GRADIO_MCP_SERVER=false)")
    args = parser.parse_args(argv)
    if args.head_precision:
        from ..backbones.precision import check_head_precision

        try:
            args.head_precision = check_head_precision(args.head_precision)
        except ValueError as error:
            parser.error(str(error))
    if args.backbone_precision:
        from ..backbones.precision import check_backbone_precision

        try:
            args.backbone_precision = check_backbone_precision(args.backbone_precision)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Build the app and serve it until interrupted."""
    args = parse_args(argv, prog)
    from ..hosting.space import configure_storage

    configure_storage()  # a Space's /data, when mounted: checkpoints, caches and uploads survive restarts
    if args.device:
        os.environ["CZSL_DEVICE"] = args.device  # models and training pick their device from here
    if args.head_precision:
        os.environ["CZSL_HEAD_PRECISION"] = args.head_precision  # read by every model at inference
    if args.backbone_precision:
        os.environ["CZSL_BACKBONE_PRECISION"] = args.backbone_precision  # read when the shared backbone loads
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .blocks import create_app, launch_options

    demo, _ = create_app(backbone=args.backbone, device=args.device, checkpoints=args.checkpoints or "")
    mcp = args.mcp and mcp_available()
    if args.mcp and not mcp:
        logging.getLogger(__name__).warning("The mcp package is missing (pip install 'gradio[mcp]'): no MCP server.")
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, mcp_server=mcp, **launch_options())
