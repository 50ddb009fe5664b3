"""Run the Gradio app: python app.py [--backbone SPEC] [--device cpu|cuda] [--host ADDR] [--port N] [--share]
[--no-mcp]. The options and their environment variables are described in czsl_models/ui/launch.py
(python app.py --help); `czsl-models app` does the same once the package is installed."""

from czsl_models.ui.launch import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    main()
