"""The bundled packs (docs/SITES.md): package data, one directory per pack with a
pack.yaml, and the bundled example site of the twin (twin-site/, with a site.yaml).
Not code: this file only makes setuptools install the folder with mendloop."""
