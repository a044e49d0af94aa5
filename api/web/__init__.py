"""The browser side of the API: web sign-in sessions (auth), HTML pages and their static files."""
