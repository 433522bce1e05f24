"""A reader session in a separate process, for the kill-and-resume test (not a test itself).

Usage: ``DIGITAL_CONTRAST_READER_TOKEN=... python reader_session_script.py DB READER SEED``

Opens the answer store, starts a reading session shown on a headless MRML scene
(:func:`~DigitalContrastReaderLib.mrml.reader_display.mrml_reading_session`; it signs the reader
in with the token and resumes), and answers items with random valid answers through the question form
(:func:`~DigitalContrastReaderLib.reading.simulate.random_form_answers`). After each
submit has RETURNED it prints ``submitted <item id> <answers as JSON>`` (flushed): a printed
line is an acknowledged answer. Before each submit it prints ``showing <item id>``.
"""

from __future__ import annotations

import json
import os
import random
import sys


def main(db: str, reader: str, seed: int) -> int:
    from DigitalContrastLib.mrml.headless import make_headless_scene
    from DigitalContrastReaderLib.mrml.reader_display import mrml_reading_session
    from DigitalContrastReaderLib.reading.simulate import random_form_answers
    from DigitalContrastReaderLib.store.sqlite import open_store

    rng = random.Random(seed)
    with open_store(db) as store:
        scene, app_logic = make_headless_scene()
        session = mrml_reading_session(scene, app_logic, store, reader,
                                       token=os.environ["DIGITAL_CONTRAST_READER_TOKEN"])
        item = session.start()
        while session.state == "reading":
            print(f"showing {item.item_id}", flush=True)
            answers = random_form_answers(item.questions, rng)
            receipt = session.submit(answers)
            print(f"submitted {receipt.item_id} {json.dumps(answers, sort_keys=True)}", flush=True)
            item = session.next()
        print(f"state {session.state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
