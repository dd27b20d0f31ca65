"""EXPLORE: the web explorer (``wxembed serve``): a page and a JSON API over one archive, its
embedding index, the model and its ``evaluation.json``.

    config.py    what a server serves (ServeConfig) and the checks of a request's values
    explorer.py  the shared state and each action of the page (hours, pictures, search, scores)
    regimes.py   stored and new clusterings, decoded centroids; interpolation
    upload.py    an uploaded query file checked before it is decoded
    render.py    fast palette PNGs in the NWS colours with map outlines
    app.py       the FastAPI app: the page, /api/..., /docs
    static/      the page: plain HTML, CSS and JavaScript, nothing fetched from elsewhere

FastAPI and uvicorn come with the optional extra ``serve`` (``pip install 'wxembed[serve]'``);
import :mod:`wxembed.serve.app` only where they are installed.
"""

from wxembed.serve.config import ServeConfig

__all__ = ["ServeConfig"]
