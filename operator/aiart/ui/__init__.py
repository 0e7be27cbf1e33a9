"""The dashboard: web pages under ``/ui`` for people who would rather not
use the CLI, served by the API's service and made from the REST API's own
handlers, so that a page shows and refuses exactly what the API does for
the same caller; its buttons call the REST API."""
