"""A reader session in a separate process, for the kill-and-resume test (not a test itself).

Usage: ``python reader_session_script.py DB READER SEED``

Opens the answer store, starts a :class:`ReadingSessionLogic` on a headless MRML scene (enrols
or resumes), and answers items with random valid answers through the question form. After each
submit has RETURNED it prints ``submitted <item id> <answers as JSON>`` (flushed): a printed
line is an acknowledged answer. Before each submit it prints ``showing <item id>``.
"""

from __future__ import annotations

import json
import random
import sys


def main(db: str, reader: str, seed: int) -> int:
    from DigitalContrastLib.mrml.headless import make_headless_scene
    from DigitalContrastReaderLib.reading.form import QuestionForm
    from DigitalContrastReaderLib.mrml.reader_display import ReadingSessionLogic
    from DigitalContrastReaderLib.store.sqlite import open_store

    rng = random.Random(seed)
    with open_store(db) as store:
        scene, app_logic = make_headless_scene()
        session = ReadingSessionLogic(scene, app_logic, store, reader)
        item = session.start()
        while session.state == "reading":
            print(f"showing {item.item_id}", flush=True)
            form = QuestionForm(item.questions)
            for spec in form.fields:
                if spec.choices:
                    form.set_value(spec.key, rng.choice(spec.choices).value)
            answers = form.answers()
            receipt = session.submit(answers)
            print(f"submitted {receipt.item_id} {json.dumps(answers, sort_keys=True)}", flush=True)
            item = session.next()
        print(f"state {session.state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
