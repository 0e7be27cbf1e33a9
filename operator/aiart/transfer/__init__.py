"""Model versions moved between swarms: packages exported from one and
imported into another (docs/packages.md)."""
