"""DVC stage entry point; the command lives in prunelab.commands.sweep (also `prunelab sweep`)."""

from prunelab.commands.sweep import app

if __name__ == "__main__":
    app()
