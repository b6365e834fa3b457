% rebase('layout.tpl', scripts=['static/definitions.js'])
<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-3">
  <h1 class="h3 m-0">Job definitions</h1>
  <a class="btn btn-outline-secondary btn-sm" href="{{root}}/web/jobs">All my jobs</a>
</div>
<p class="text-body-secondary">What you may run on this server. Choose one to submit a job or see its jobs.</p>
<div id="definitions" class="row row-cols-1 row-cols-md-2 g-3" aria-busy="true">
  <p class="text-body-secondary">Loading…</p>
</div>
