"""DVC stage entry point; the command lives in prunelab.commands.compact (also `prunelab compact`)."""

from prunelab.commands.compact import app

if __name__ == "__main__":
    app()
