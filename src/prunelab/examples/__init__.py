"""Example plugins, loaded by import path exactly as a user's own package would be."""
