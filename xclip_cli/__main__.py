"""``python -m xclip_cli`` (``xclip`` is also an X11 clipboard tool's name)."""

from xclip_cli.cli import main

if __name__ == "__main__":
    main()
