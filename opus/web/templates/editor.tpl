% rebase('layout.tpl', scripts=['lib/codemirror/lib/codemirror.js', 'lib/codemirror/mode/shell/shell.js', 'static/editorfields.js', 'static/editor.js'], styles=['lib/codemirror/lib/codemirror.css', 'static/editor.css'])
<h1 class="h3">Definition editor</h1>
<div id="editor" data-name="{{name}}">
  <p class="text-body-secondary">Loading…</p>
</div>
