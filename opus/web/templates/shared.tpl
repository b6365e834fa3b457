% rebase('layout.tpl', scripts=['static/shared.js'])
<h1 class="h3">Shared with you</h1>
<p class="text-body-secondary">Jobs other users shared with you, or with a group you belong to: you may read them and
  download their results, never change them. The owner can stop sharing at any time.</p>
<div id="shared" aria-busy="true"><p class="text-body-secondary">Loading…</p></div>
