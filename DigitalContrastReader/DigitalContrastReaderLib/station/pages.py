"""The front's own pages: sign-in and the admin view (plain HTML, style and script inline: no CDN).

Neither page names the study, its cases, images or sources. Test hooks (``data-testid``):
``reader-id``, ``reader-token``, ``sign-in``, ``sign-in-error``, ``sign-in-note``; ``admin-token``,
``admin-sign-in``, ``admin-error``, ``admin-progress``.
"""

from __future__ import annotations

from html import escape

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d1f23; }
main { max-width: 380px; margin: 10vh auto; background: #fff; padding: 28px 32px; border-radius: 8px;
       box-shadow: 0 1px 4px rgba(0,0,0,.15); }
main.wide { max-width: 1100px; margin: 4vh auto; }
h1 { font-size: 20px; margin: 0 0 16px; }
label { display: block; margin: 12px 0 4px; font-weight: 600; }
input { width: 100%; box-sizing: border-box; padding: 8px; font: inherit; border: 1px solid #9aa0a6; border-radius: 4px; }
button { margin-top: 18px; padding: 9px 18px; font: inherit; font-weight: 600; color: #fff; background: #1976d2;
         border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #b71c1c; margin-top: 14px; }
.note { color: #37474f; background: #e3f2fd; padding: 8px 10px; border-radius: 4px; }
table { border-collapse: collapse; width: 100%; margin-top: 14px; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #ddd; }
th { background: #eceff1; }
"""

NOTES = {
    "ended": "Your reading session ended (the station restarted, or the page was closed for a while). Sign in "
             "again to continue: every answer the station confirmed is saved.",
    "signed_out": "You are signed out. Your answers are saved.",
}


#: The one sentence for a refused sign-in (the same for an unknown reader and a wrong token, so
#: that the page does not tell which reader ids exist).
SIGN_IN_REFUSED = ("That reader id and token do not match a reader of this study; check both (the token came "
                   "with your reader id) or ask the study admin.")


def _page(title: str, body: str, wide: bool = False) -> str:
    main = '<main class="wide">' if wide else "<main>"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{_STYLE}</style></head>"
            f"<body>{main}{body}</main></body></html>")


def sign_in_page(*, error: str = "", note: str = "", reader_id: str = "") -> str:
    """The sign-in form; ``error`` is the sentence of a refused sign-in."""
    parts = ["<h1>Reading station</h1>"]
    if note:
        parts.append(f"<p class=\"note\" data-testid=\"sign-in-note\">{escape(note)}</p>")
    parts.append(
        "<form method=\"post\" action=\"sign-in\">"
        "<label for=\"reader-id\">Reader id</label>"
        f"<input id=\"reader-id\" name=\"reader_id\" data-testid=\"reader-id\" autocomplete=\"username\" "
        f"value=\"{escape(reader_id)}\" required autofocus>"
        "<label for=\"reader-token\">Token</label>"
        "<input id=\"reader-token\" name=\"token\" type=\"password\" data-testid=\"reader-token\" "
        "autocomplete=\"current-password\" required>"
        "<button type=\"submit\" data-testid=\"sign-in\">Sign in</button>"
        "</form>"
    )
    if error:
        parts.append(f"<p class=\"error\" role=\"alert\" data-testid=\"sign-in-error\">{escape(error)}</p>")
    return _page("Reading station", "".join(parts))


_ADMIN_SCRIPT = """
const form = document.getElementById('admin-form');
const table = document.getElementById('progress');
const error = document.getElementById('admin-error');
let timer = null;
function cell(text) { const td = document.createElement('td'); td.textContent = text ?? ''; return td; }
async function refresh() {
  const token = sessionStorage.getItem('dc-admin-token');
  if (!token) return;
  let reply;
  try { reply = await fetch('admin/progress', {headers: {Authorization: 'Bearer ' + token}, cache: 'no-store'}); }
  catch (e) { error.textContent = 'The station is not answering; retrying.'; return; }
  if (reply.status === 401) { error.textContent = (await reply.json()).error; sessionStorage.removeItem('dc-admin-token');
    clearInterval(timer); timer = null; form.hidden = false; return; }
  const data = await reply.json();
  error.textContent = '';
  form.hidden = true;
  document.getElementById('summary').textContent = data.summary;
  const body = table.querySelector('tbody');
  body.replaceChildren(...data.readers.map(r => {
    const tr = document.createElement('tr');
    tr.setAttribute('data-testid', 'admin-reader-' + r.reader_id);
    [r.site, r.reader_id, r.group, r.items, r.training, r.session, r.last_submit_at, r.reading_now ? 'yes' : '',
     r.memory_mb].forEach(v => tr.appendChild(cell(v)));
    return tr;
  }));
  table.hidden = false;
}
form.addEventListener('submit', event => {
  event.preventDefault();
  sessionStorage.setItem('dc-admin-token', document.getElementById('admin-token').value.trim());
  refresh();
  if (!timer) timer = setInterval(refresh, 2000);
});
if (sessionStorage.getItem('dc-admin-token')) { refresh(); timer = setInterval(refresh, 2000); }
"""


def admin_page() -> str:
    """Progress per reader and site, refreshed every 2 s once the admin token is given."""
    body = (
        "<h1>Reading station: progress</h1>"
        "<form id=\"admin-form\"><label for=\"admin-token\">Admin token</label>"
        "<input id=\"admin-token\" type=\"password\" data-testid=\"admin-token\" autocomplete=\"off\" required>"
        "<button type=\"submit\" data-testid=\"admin-sign-in\">Show progress</button></form>"
        "<p class=\"error\" id=\"admin-error\" data-testid=\"admin-error\"></p>"
        "<p id=\"summary\" data-testid=\"admin-summary\"></p>"
        "<table id=\"progress\" data-testid=\"admin-progress\" hidden><thead><tr><th>Site</th><th>Reader</th>"
        "<th>Group</th><th>Items done</th><th>Training done</th><th>Session</th><th>Last submit (UTC)</th>"
        "<th>Reading now</th><th>Page process (MB)</th></tr></thead><tbody></tbody></table>"
        f"<script>{_ADMIN_SCRIPT}</script>"
    )
    return _page("Reading station: progress", body, wide=True)
