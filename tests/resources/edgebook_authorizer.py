"""A Jupyter authorizer for the tests: on the ``edgebook`` resource it allows only reading
the admin API; everything else Jupyter serves is allowed."""

from jupyter_server.auth.authorizer import Authorizer


class ReadOnlyEdgebook(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        if resource != "edgebook":
            return True
        return action == "read" and handler.request.path.startswith("/edgebook/api/")
