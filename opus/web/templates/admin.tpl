% rebase('layout.tpl', scripts=['static/admin.js'])
<h1 class="h3">Administration</h1>
<div id="admin"><p class="text-body-secondary">Loading…</p></div>
