"""``digital-contrast synthesize``: a synthetic CTA from a non-contrast CT file or DICOM folder."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "synthesize"
HELP = "synthesize a contrast-enhanced CT angiogram from a non-contrast CT"
ORDER = 30
DESCRIPTION = """\
Check the input (errors stop with exit code 2, warnings are printed), run the synthesis model
in a background worker process (the same worker Slicer uses; Ctrl-C cancels it and its children),
and write the synthetic CTA atomically on exactly the input grid, with its provenance JSON
beside it (<OUTPUT>.json: input and model hashes, device, backend, timings, warnings).

examples:
  digital-contrast synthesize ncct.nrrd synthetic.nrrd
  digital-contrast synthesize dicom_dir/ synthetic.nii.gz --series 1.2.840... --uncertainty sd.nrrd
  digital-contrast synthesize ncct.nrrd out.nrrd --model aorta-phantom-v1 --device cuda --json
  digital-contrast synthesize ncct.nrrd out.nrrd --backend torch      # not OpenVINO, even where installed
  DIGITAL_CONTRAST_TOKEN=dc_... digital-contrast synthesize ncct.nrrd out.nrrd --server https://gpu1.example.org

With --server the job runs on a synthesis service ('digital-contrast serve') instead of this
machine: the input is uploaded, the progress bar, Ctrl-C cancel, input check and provenance are
the same, and the provenance names the server and its device (--device is then the server's;
--backend is passed on to the server's worker).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="non-contrast CT: .nrrd, .nii[.gz], .mha or a DICOM folder")
    parser.add_argument("output", help="synthetic CTA file to write (format from the extension)")
    parser.add_argument("--model", default=None, help="model id or model folder (default: aorta-phantom-v1)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where the network runs (auto: CUDA, then MPS, then CPU)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"],
                        help="which library runs the network: auto takes OpenVINO on an x86-64 CPU where it is "
                             "installed (pip install 'digital-contrast[cpu-fast]'), torch otherwise and on GPUs; "
                             "the provenance records the one used")
    parser.add_argument("--uncertainty", metavar="PATH", default=None,
                        help="also write a voxel-wise SD map in HU (flip test-time augmentation; 4x the time)")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap in [0, 1) (default: the card's)")
    parser.add_argument("--series", metavar="UID", default=None, help="DICOM Series Instance UID when the folder holds several")
    parser.add_argument("--server", metavar="URL", default=None,
                        help="run on a synthesis service (token from DIGITAL_CONTRAST_TOKEN) instead of locally")
    parser.add_argument("--json", action="store_true", help="print the provenance as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.common.progressbar import ProgressBar
    from DigitalContrastLib.synthesis.options import SynthesisOptions
    from DigitalContrastLib.worker.client import run_synthesis_job

    options = SynthesisOptions(model_id=args.model, device=args.device, uncertainty_output=args.uncertainty,
                               overlap=args.overlap, series_uid=args.series, backend=args.backend)

    def warn(code: str, message: str) -> None:
        print(f"warning [{code}]: {message}", file=sys.stderr)

    client = None
    if args.server:
        from DigitalContrastLib.worker.remote_client import RemoteWorkerClient

        client = RemoteWorkerClient(args.server)
    with ProgressBar("synthesize") as bar:
        provenance = run_synthesis_job(args.input, args.output, options, progress=bar, on_warning=warn,
                                       client=client)["provenance"]
    if args.json:
        print(json.dumps(provenance, indent=2))
    else:
        t = provenance["timings_s"]
        print(f"wrote {provenance['output']['path']} (SYNTHETIC, model {provenance['model']['id']} "
              f"{provenance['model']['version']}, {provenance['device']}, "
              f"{sum(t.values()):.1f} s{_where(provenance)}) and its provenance {provenance['output']['path']}.json")
    return 0


def _where(provenance: dict) -> str:
    server = provenance.get("server")
    return f" on {server['url']}" if server else ""
