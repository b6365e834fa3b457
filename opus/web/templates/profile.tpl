% rebase('layout.tpl', scripts=['static/account.js'])
<h1 class="h3">Your account</h1>
<div id="account"><p class="text-body-secondary">Loading…</p></div>
