"""The review page: a trame-slicer app over the same MRML logic as the Slicer module.

One page, one review session: the user gives a token of the synthesis service, uploads a
non-contrast CT (and optionally its real contrast CT), presses Run; the synthesis runs on the service
through :class:`~DigitalContrastLib.worker.remote_client.RemoteWorkerClient`, driven by the module's
own :class:`~DigitalContrastLib.mrml.synthesis_logic.SynthesisLogic` (input check, progress, cancel,
the result node with its provenance), and the result is shown by the module's
:func:`~DigitalContrastLib.mrml.review_layout.show_review` in three linked slice views rendered on the
server (trame-slicer's remote views), with the CTA window. The result and its labelled DICOM series
are downloaded from the service.

Test hooks (``data-testid``): ``token``, ``upload-noncontrast``, ``upload-contrast``, ``run``,
``cancel``, ``progress``, ``status``, ``views``, ``download-result``, ``download-dicom``.

The page's state lives in this process and is shared by every browser connected to it: run one
process per review session (``digital-contrast serve --web-port`` starts one beside the API).
Nothing is computed here: the page moves files and calls the library.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trame.app import TrameApp
from trame.ui.vuetify3 import SinglePageLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from DigitalContrastLib.common.errors import UserError
from DigitalContrastLib.mrml.panel_text import distribution_warning
from DigitalContrastLib.mrml.review_layout import COLUMNS, show_review
from DigitalContrastLib.mrml.synthesis_logic import UNCERTAINTY_REFERENCE, SynthesisLogic
from DigitalContrastLib.mrml.volume_nodes import load_volume_file
from DigitalContrastLib.worker.remote_client import RemoteWorkerClient
from DigitalContrastLib.worker.remote_http import ServerConnection

REVIEW_LAYOUT = "review"
POLL_S = 0.1


def testid(name: str) -> dict[str, Any]:
    """The keyword arguments that give a trame widget ``data-testid=name`` (trame drops undeclared ones)."""
    return {"data_testid": name, "__properties": [("data_testid", "data-testid")]}


class ReviewApp(TrameApp):
    """The review page of the synthesis service at ``server_url``."""

    def __init__(self, server_url: str, server: Any = None) -> None:
        super().__init__(server)
        self.server_url = server_url
        self.server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server)
        self.layouts = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layouts.register_layout(REVIEW_LAYOUT, Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.slice_view("Axial", label=column.tag, color=column.color) for column in COLUMNS]))
        self.folder = Path(tempfile.mkdtemp(prefix="dc-review-"))
        self.logic: SynthesisLogic | None = None
        self.nodes: dict[str, Any] = {}
        self._chunks: dict[str, list[dict]] = {"noncontrast": [], "contrast": []}
        self._poller: asyncio.Task | None = None
        self.state.update({"token": "", "noncontrast_name": "", "contrast_name": "", "running": False,
                           "progress": 0, "stage": "", "message": "", "message_type": "info", "done": False, "overlay": "",
                           "trame__title": "DigitalContrast review"})
        self._build_ui()
        self.layouts.set_layout(REVIEW_LAYOUT)

    # ------------------------------------------------------------------ page
    def _upload(self, key: str, label: str) -> None:
        trigger = self.server.trigger_name(getattr(self, f"_chunk_{key}"))
        v3.VFileInput(label=label, density="compact", hide_details=True, prepend_icon="mdi-upload",
                      disabled=("running",), style="max-width: 260px",
                      change=(f"window.load_files_by_chunks($event.target.files, {{ trigger_name: '{trigger}' }})"),
                      **testid(f"upload-{key}"))

    def _build_ui(self) -> None:
        with SinglePageLayout(self.server, full_height=True) as page:
            page.title.set_text("DigitalContrast review")
            with page.toolbar:
                v3.VSpacer()
                v3.VTextField(v_model=("token",), label="Token", type="password", density="compact",
                              hide_details=True, style="max-width: 220px", **testid("token"))
                self._upload("noncontrast", "Non-contrast CT")
                self._upload("contrast", "Real contrast CT (optional)")
                v3.VBtn("Run", click=self.run, disabled=("running || !noncontrast_name || !token",),
                        color="primary", **testid("run"))
                v3.VBtn("Cancel", click=self.cancel, disabled=("!running",), **testid("cancel"))
                v3.VBtn("Result", prepend_icon="mdi-download", disabled=("!done",), click=(
                    f"utils.download('synthetic.nrrd', trigger('{self.server.trigger_name(self.result_bytes)}'), "
                    "'application/octet-stream')"), **testid("download-result"))
                v3.VBtn("DICOM", prepend_icon="mdi-download", disabled=("!done",), click=(
                    f"utils.download('synthetic-dicom.zip', trigger('{self.server.trigger_name(self.dicom_bytes)}'), "
                    "'application/zip')"), **testid("download-dicom"))
            with page.content:
                with html.Div(style="display: flex; flex-direction: column; height: 100%;"):
                    with v3.VProgressLinear(model_value=("progress",), height=22, color="orange",
                                            **testid("progress")):
                        html.Span("{{ Math.round(progress) }} % {{ stage }}", **testid("status"))
                    v3.VAlert(v_if=("message",), text=("message",), type=("message_type",), density="compact",
                              **testid("message"))
                    with html.Div(style="display: flex;"):
                        for column in COLUMNS:  # which scan each view shows, in the view's frame colour
                            html.Div(column.label, style=f"flex: 1; text-align: center; font-weight: 600; "
                                                         f"color: white; background: {column.color};")
                    html.Div("{{ overlay }}", v_if=("overlay",), style="text-align: center; font-size: 90%;",
                             **testid("overlay"))
                    with html.Div(style="flex: 1 1 auto; position: relative; min-height: 420px;", **testid("views")):
                        self.layouts.initialize_layout_grid(page)

    # ------------------------------------------------------------------ uploads
    async def _chunk_noncontrast(self, files: list[dict]) -> None:
        await self._chunk("noncontrast", files)

    async def _chunk_contrast(self, files: list[dict]) -> None:
        await self._chunk("contrast", files)

    async def _chunk(self, key: str, files: list[dict]) -> None:
        """trame-slicer's chunked upload: lists of file parts, then an empty list at the end."""
        if files:
            self._chunks[key].extend(files)
            return
        parts, self._chunks[key] = self._chunks[key], []
        if not parts:
            return
        from trame_slicer.utils import write_client_files_to_dir

        folder = self.folder / key
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        path = Path(write_client_files_to_dir(parts, folder)[0])
        try:
            self._replace_node(key, load_volume_file(self.slicer.scene, path, "Non-contrast" if key == "noncontrast"
                                                      else "Real contrast", self.slicer.app_logic))
        except UserError as error:
            self._say(error.message.replace(str(path), path.name), "error")
            return
        self.nodes[key + "_path"] = path
        with self.state:
            self.state[f"{key}_name"] = path.name
            self.state.message = ""
        self._show()

    def _replace_node(self, key: str, node: Any) -> None:
        old = self.nodes.get(key)
        if old is not None and old.GetScene() is not None:
            self.slicer.scene.RemoveNode(old)
        self.nodes[key] = node

    def _say(self, message: str, kind: str = "info") -> None:
        with self.state:
            self.state.message, self.state.message_type = message, kind

    # ------------------------------------------------------------------ the job
    def run(self) -> None:
        """Start the synthesis of the uploaded non-contrast CT on the service."""
        nc = self.nodes.get("noncontrast")
        if nc is None or self.state.running:
            return
        token = self.state.token
        if self.logic is not None:
            self.logic.close()
        self.logic = SynthesisLogic(self.slicer.scene, self.slicer.app_logic,
                                    lambda: RemoteWorkerClient(self.server_url, token), work_dir=self.folder)
        try:
            self.logic.start(nc, allow_warnings=True)
        except UserError as error:
            self._say(error.message, "error")
            return
        with self.state:
            self.state.update({"running": True, "done": False, "progress": 0, "stage": "starting", "message": ""})
        self._poller = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        logic = self.logic
        assert logic is not None and logic.job is not None
        job = logic.job
        while not job.finished:
            logic.poll()
            with self.state:
                self.state.progress = round(100 * job.overall_fraction, 1)
                self.state.stage = job.status_text()
                sentence = distribution_warning(job, None)  # an input unlike the training data: said first
                if sentence and self.state.message != sentence:
                    self.state.message, self.state.message_type = sentence, "warning"
            await asyncio.sleep(POLL_S)
        with self.state:
            self.state.running = False
            if job.ok:
                self.state.progress, self.state.stage, self.state.done = 100, job.status_text(), True
                for code, text in job.warnings:
                    self.state.message, self.state.message_type = f"[{code}] {text}", "warning"
            else:
                self.state.stage = job.status
                self.state.message, self.state.message_type = job.status_text(), (
                    "info" if job.status == "cancelled" else "error")
        if job.ok:
            synthetic = self.slicer.scene.GetNodeByID(job.result_node_id)
            self._replace_node("synthetic", synthetic)
            sentence = distribution_warning(job, synthetic)
            if sentence:  # above any other warning of the input check
                with self.state:
                    self.state.message, self.state.message_type = sentence, "warning"
            self._show()

    def cancel(self) -> None:
        if self.logic is not None and self.logic.running:
            self.logic.cancel("cancelled on the review page")

    def _show(self) -> None:
        """Non-contrast | synthetic | real in the linked views (the module's review layout and windows)."""
        nc, synthetic, real = (self.nodes.get(key) for key in ("noncontrast", "synthetic", "contrast"))
        if nc is None:
            return
        backgrounds = {"nc": nc, "synthetic": synthetic or nc, "real": real or synthetic or nc}
        # as in the Slicer module: an input unlike the training data opens with its uncertainty map
        overlay = synthetic.GetNodeReference(UNCERTAINTY_REFERENCE) if (
            synthetic is not None and SynthesisLogic.review_overlay(synthetic) == "uncertainty") else None
        show_review(self.slicer.scene, self.slicer.app_logic, backgrounds["nc"], backgrounds["synthetic"],
                    backgrounds["real"], overlay=overlay)
        with self.state:
            self.state.overlay = ("Over the synthetic view: its uncertainty map (voxel-wise SD, yellow to red)"
                                  if overlay is not None else "")
        for view in self.slicer.view_manager.get_slice_views():
            view.schedule_render()

    # ------------------------------------------------------------------ downloads
    def _server_job(self) -> str | None:
        job = self.logic.job if self.logic is not None else None
        result = (job.outcome.result or {}) if job is not None and job.outcome is not None else {}
        return (result.get("server") or {}).get("job_id")

    def _fetch(self, route: str) -> Any:
        job_id = self._server_job()
        if job_id is None:
            return None
        try:
            response = ServerConnection(self.server_url, self.state.token, timeout_s=300).open(
                "GET", f"/v1/jobs/{job_id}/{route}")
            data = response.read()
            response.close()
        except UserError as error:
            self._say(error.message, "error")
            return None
        return self.server.protocol.addAttachment(data)

    def result_bytes(self) -> Any:
        return self._fetch("result")

    def dicom_bytes(self) -> Any:
        return self._fetch("dicom")
