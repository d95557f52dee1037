"""DVC stage entry point; the command lives in prunelab.commands.report (also `prunelab report`)."""

from prunelab.commands.report import app

if __name__ == "__main__":
    app()
