"""The try-it widget under a deployed cell: edit the path and body, press Send, see the reply.

Requests go out on a short-lived thread, never on the kernel's event loop (a button's
callback runs there), and the reply lands in the widget through ``Output.append_*``.
"""

from __future__ import annotations

import json
import threading

import ipywidgets as w

from .cells import DeployedEndpoint, example_path
from .session import request

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class TryIt(w.VBox):
    """Send requests to one endpoint from its cell."""

    def __init__(self, deployed: DeployedEndpoint, session, **kwargs):
        self.deployed = deployed
        self.session = session
        self.path = w.Text(value=example_path(deployed.path), description=deployed.request_method,
                           layout=w.Layout(width="420px"))
        self.body = w.Textarea(value='{"hello": "edgebook"}', placeholder="request body",
                               layout=w.Layout(width="420px", height="64px"))
        self.send = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.output = w.Output()
        self.send.on_click(self._clicked)
        rows = [w.HBox([self.path, self.send])]
        if deployed.method in BODY_METHODS:
            rows.append(self.body)
        super().__init__(rows + [self.output], **kwargs)

    def _clicked(self, _button) -> None:
        self.send.disabled = True
        threading.Thread(target=self._send, name="edgebook-try-it", daemon=True).start()

    def _send(self) -> None:
        kwargs = {}
        if self.deployed.method in BODY_METHODS and self.body.value.strip():
            try:
                kwargs["json"] = json.loads(self.body.value)
            except ValueError:
                kwargs["data"] = self.body.value
        try:
            response = request(self.deployed.request_method, self.path.value, session=self.session,
                               **kwargs)
        except Exception as exc:  # shown in the widget; the kernel carries on
            self.output.outputs = ()
            self.output.append_stderr(f"{type(exc).__name__}: {exc}\n")
        else:
            self.output.outputs = ()
            self.output.append_display_data(response)
        finally:
            self.send.disabled = False


def endpoint_card(deployed: DeployedEndpoint, session) -> w.VBox:
    """The live URL, a copyable curl line and the try-it widget."""
    return w.VBox([w.HTML(deployed._repr_html_()), TryIt(deployed, session)])
