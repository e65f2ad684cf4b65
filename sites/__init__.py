"""Sites and packs: one directory describes an estate (docs/SITES.md).

    site = load_site(Path("my-site"))            # SiteError: every problem, file:line
    report = check_site(Path("my-site"))         # the Site (or None) and every problem
    scaffold(Path("new-site"))                   # `mendloop init DIR`

A site composes bundled packs (``packs/<name>/``, each the same layout with a pack.yaml)
and its own entries into ONE typed ``Site`` (sites/model.py) that ``build_engine``
consumes: domain, metric catalog, rules, solution library, seed cases, inventory,
settings and parameter defaults. Reading is in sites/read.py, composition (pure) in
sites/compose.py, cross-reference checks in sites/check.py.
"""

from sites.load import check_site, load_site
from sites.model import Site

__all__ = ["Site", "check_site", "load_site"]
