"""The question form of the reading page, as Vuetify widgets rendered from the browser state.

One template serves every task: it loops over ``fields`` (:func:`~DigitalContrastReaderLib.station.form_state.field_view`)
and binds each widget to ``answers[field.key]``. A change replaces the whole ``answers`` object,
so trame sends it to the server, where :class:`~DigitalContrastReaderLib.station.form_state.BrowserForm`
validates it with the study's rules. Test hooks (``data-testid``): ``q-<key>`` on each question's
input, ``q-<key>-<tag>`` on each choice, ``form-status``, ``submit``.
"""

from __future__ import annotations

from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3

_SET = "answers = Object.assign({{}}, answers, {{[field.key]: {value}}})"
_CHECKED = ("(Array.isArray(answers[field.key]) ? answers[field.key] : [])")


def testid(name: str | tuple[str]) -> dict[str, Any]:
    """Keyword arguments that give a trame widget ``data-testid`` (a text, or a bound expression
    as a 1-tuple); trame drops attributes it does not know of."""
    return {"data_testid": name, "__properties": [("data_testid", "data-testid")]}


def build_form() -> None:
    """The form panel (inside the page being built): instructions, questions, status, Submit."""
    html.Div("{{ instructions }}", classes="text-body-2 mb-3", **testid("instructions"))
    with html.Div(v_for="field in fields", key="field.key",
                  classes=("field.key === current_key ? 'station-question station-current' : 'station-question'",)):
        html.Div("{{ field.title }}", classes="text-subtitle-2", title=("field.help",))
        # Likert, single choice, yes/no: radio buttons (digits choose a level of the current question)
        with v3.VRadioGroup(v_if="field.widget === 'radio' || field.widget === 'yes_no'",
                            model_value=("answers[field.key]",), update_modelValue=_SET.format(value="$event"),
                            density="compact", hide_details=True, inline=("field.widget === 'yes_no'",),
                            **testid(("'q-' + field.key",))):
            v3.VRadio(v_for="choice in field.choices", key="choice.tag", label=("choice.text",),
                      value=("choice.value",), density="compact", **testid(("'q-' + field.key + '-' + choice.tag",)))
        # multiple choice: one check box per option
        with html.Div(v_if="field.widget === 'checkboxes'", **testid(("'q-' + field.key",))):
            v3.VCheckbox(
                v_for="choice in field.choices", key="choice.tag", label=("choice.text",), density="compact",
                hide_details=True, model_value=(f"{_CHECKED}.includes(choice.value)",),
                update_modelValue=_SET.format(value=(
                    f"$event ? {_CHECKED}.concat([choice.value]) : {_CHECKED}.filter(v => v !== choice.value)")),
                **testid(("'q-' + field.key + '-' + choice.tag",)),
            )
        # number: typed, parsed and checked on the server by the question's own rules
        v3.VTextField(v_if="field.widget === 'number'", model_value=("answers[field.key] ?? ''",),
                      update_modelValue=_SET.format(value="$event"), inputmode="decimal", density="compact",
                      suffix=("field.unit",), hint=("field.hint",), persistent_hint=True,
                      error_messages=("field_errors[field.key] ? [field_errors[field.key]] : []",),
                      **testid(("'q-' + field.key",)))
        v3.VTextarea(v_if="field.widget === 'text'", model_value=("answers[field.key] ?? ''",),
                     update_modelValue=_SET.format(value="$event"), rows=2, auto_grow=True, density="compact",
                     counter=("field.max_length || false",),
                     error_messages=("field_errors[field.key] ? [field_errors[field.key]] : []",),
                     **testid(("'q-' + field.key",)))
    html.Div("{{ form_status }}", classes="text-body-2 my-2", **testid("form-status"))
    v3.VBtn("Submit", color="primary", block=True, disabled=("!can_submit",),
            click="window.dcStation.submit(item_id, answers)", **testid("submit"))
    html.Div("Digits 1-9 answer the highlighted question; {{ submit_key }} submits.",
             classes="text-caption mt-2 text-medium-emphasis")
