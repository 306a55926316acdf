"""The web wizard: from "I need an image" to every link, server-rendered, usable without JS.

``wizard`` holds the state (upstream's query parameters), the step order and the schematic
building; ``views`` the Starlette handler that checks each answer against the catalog and
renders ``templates/`` (Jinja2, autoescaped); ``platforms`` the cloud platforms' labels and
docs pages. ``static/`` is served from this origin only: a stylesheet with light and dark
schemes and a small script that only enhances (live filtering, copy button).

May import the common package and ``frontends.common``, like the rest of the http frontend.
"""
