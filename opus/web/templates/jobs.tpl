% rebase('layout.tpl', scripts=['static/joblist.js'])
<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-3">
  <h1 class="h3 m-0">{{title}}</h1>
  % if jobname:
  <a class="btn btn-primary" href="{{root}}/web/new/{{jobname}}">New {{jobname}} job</a>
  % end
</div>
<form id="job-filters" class="row g-2 align-items-end mb-3" data-jobname="{{jobname}}" aria-label="Filters">
  % if not jobname:
  <div class="col-sm-6 col-md-3">
    <label class="form-label" for="filter-jobname">Definition</label>
    <select class="form-select" id="filter-jobname"><option value="">All</option></select>
  </div>
  % end
  <div class="col-sm-6 col-md-3">
    <label class="form-label" for="filter-phase">Phase</label>
    <select class="form-select" id="filter-phase">
      <option value="">Any (not archived)</option>
      % for p in ('PENDING', 'QUEUED', 'EXECUTING', 'COMPLETED', 'ERROR', 'ABORTED', 'HELD', 'SUSPENDED', 'ARCHIVED'):
      <option>{{p}}</option>
      % end
    </select>
  </div>
  <div class="col-sm-6 col-md-3">
    <label class="form-label" for="filter-after">Created after</label>
    <input class="form-control" type="datetime-local" id="filter-after">
  </div>
  <div class="col-sm-6 col-md-2">
    <label class="form-label" for="filter-size">Per page</label>
    <select class="form-select" id="filter-size"><option>10</option><option selected>25</option><option>50</option><option>100</option></select>
  </div>
</form>
<div class="table-responsive">
  <table class="table table-hover align-middle" id="jobs-table">
    <caption class="visually-hidden">Jobs, newest first</caption>
    <thead><tr>
      <th scope="col">Job</th>
      % if not jobname:
      <th scope="col" class="d-none d-sm-table-cell">Definition</th>
      % end
      <th scope="col">Phase</th><th scope="col" class="d-none d-md-table-cell">Created</th>
      <th scope="col" class="d-none d-lg-table-cell">Started</th><th scope="col" class="d-none d-lg-table-cell">Ended</th>
      <th scope="col" class="text-end">Actions</th>
    </tr></thead>
    <tbody id="jobs-body"><tr><td colspan="7" class="text-body-secondary">Loading…</td></tr></tbody>
  </table>
</div>
<nav class="d-flex align-items-center justify-content-between" aria-label="Pages of jobs">
  <button class="btn btn-outline-secondary btn-sm" id="page-newer" type="button" disabled>&larr; Newer</button>
  <span id="page-info" class="text-body-secondary small" aria-live="polite"></span>
  <button class="btn btn-outline-secondary btn-sm" id="page-older" type="button" disabled>Older &rarr;</button>
</nav>
<p class="small text-body-secondary mt-2" id="live-status" aria-live="polite"></p>
