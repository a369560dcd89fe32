"""The monitoring mixin's build: jsonnet in, the repository's rule files and dashboards out.

`python -m mixin` writes them; `python -m mixin --check` says which differ. See docs/mixin.md.
"""
