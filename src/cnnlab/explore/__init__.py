"""``cnnlab explore``: a local web page that shows a trained network at work on an image the user draws or
uploads, computed in Python by :mod:`cnnlab.inspect`.

    Explorer(source)                 one model: top-k classes, each stage's feature maps, one unit (its
                                     filter, map and receptive field), attributions for a class
    TopPatchCache(source, ...)       the run's images that excite a unit most, computed once per stage
                                     and kept in RUN/explore-cache/
    make_server(explorers, port=0)   the HTTP server (127.0.0.1 only) behind the page and its JSON API

The page is a Jinja2 template with plain JavaScript and CSS served beside it: no build step, nothing
fetched from elsewhere.
"""

from cnnlab.explore.patches import TopPatchCache
from cnnlab.explore.server import MAX_BODY_BYTES, RequestError, make_server
from cnnlab.explore.session import ATTRIBUTIONS, Explorer, Stage, load_explorers

__all__ = ["Explorer", "Stage", "ATTRIBUTIONS", "load_explorers", "TopPatchCache", "make_server", "RequestError",
           "MAX_BODY_BYTES"]
