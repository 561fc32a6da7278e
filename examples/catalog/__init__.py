"""The catalog module: a versioned JSON API that a browser app on another origin calls (CORS)."""
