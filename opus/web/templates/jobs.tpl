% rebase('layout.tpl', scripts=['static/joblist.js'])
<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-3">
  <h1 class="h3 m-0">{{title}}</h1>
  % if jobname:
  <a class="btn btn-primary" href="{{root}}/web/new/{{jobname}}">New {{jobname}} job</a>
  % end
</div>
%# A real GET form: its fields are the page's query (bookmarkable); joblist.js applies it without reloading.
<form id="job-filters" class="row g-2 align-items-end mb-3" data-jobname="{{jobname}}" aria-label="Filters" method="get">
  % if not jobname:
  <div class="col-6 col-md-3 col-lg-2">
    <label class="form-label" for="filter-jobname">Definition</label>
    <select class="form-select" id="filter-jobname" name="definition"><option value="">All</option></select>
  </div>
  % end
  <div class="col-6 col-md-3 col-lg-2">
    <label class="form-label" for="filter-phase">Phase</label>
    <select class="form-select" id="filter-phase" name="phase">
      <option value="">Any (not archived)</option>
      <option value="ACTIVE">Unfinished (pending, queued, executing, held, suspended)</option>
      % for p in ('PENDING', 'QUEUED', 'EXECUTING', 'COMPLETED', 'ERROR', 'ABORTED', 'HELD', 'SUSPENDED', 'ARCHIVED'):
      <option value="{{p}}">{{p}}</option>
      % end
    </select>
  </div>
  <div class="col-6 col-md-3 col-lg-2">
    <label class="form-label" for="filter-runid">Run id contains</label>
    <input class="form-control" type="search" id="filter-runid" name="runid" maxlength="64" autocomplete="off">
  </div>
  <div class="col-6 col-md-3 col-lg-2">
    <label class="form-label" for="filter-after">Created after</label>
    <input class="form-control" type="datetime-local" id="filter-after">
  </div>
  <div class="col-6 col-md-3 col-lg-2">
    <label class="form-label" for="filter-before">Created before</label>
    <input class="form-control" type="datetime-local" id="filter-before">
  </div>
  <div class="col-6 col-md-2 col-lg-1">
    <label class="form-label" for="filter-size">Per page</label>
    <select class="form-select filter-short" id="filter-size" name="size"><option>10</option><option selected>25</option><option>50</option><option>100</option></select>
  </div>
  <div class="col-12 col-md-auto d-flex gap-2">
    <button class="btn btn-outline-secondary" type="submit" id="filter-apply">Apply</button>
    <a class="btn btn-link" id="filter-clear" href="?">Clear filters</a>
  </div>
</form>
<div id="bulk-bar" class="alert alert-secondary d-flex flex-wrap align-items-center gap-2 py-2" role="region" aria-label="Selected jobs" hidden>
  <span id="bulk-count" aria-live="polite"></span>
  <button class="btn btn-warning btn-sm" type="button" id="bulk-abort">Abort selected</button>
  <button class="btn btn-danger btn-sm" type="button" id="bulk-delete">Delete selected</button>
  <button class="btn btn-link btn-sm link-body-emphasis" type="button" id="bulk-clear">Clear the selection</button>
</div>
<div class="table-responsive" id="jobs-table-wrap">
  <table class="table table-hover align-middle" id="jobs-table">
    <caption class="visually-hidden">Jobs, newest first</caption>
    <thead><tr>
      <th scope="col" class="select-cell"><input class="form-check-input" type="checkbox" id="select-all">
        <label for="select-all" class="jl-phone-label fw-normal">Select all the jobs of this page</label></th>
      <th scope="col">Job</th>
      % if not jobname:
      <th scope="col" class="jl-sm">Definition</th>
      % end
      <th scope="col">Phase</th><th scope="col" class="jl-md">Created</th>
      <th scope="col" class="jl-lg">Started</th><th scope="col" class="jl-lg">Ended</th>
      <th scope="col" class="jl-md">Destruction</th>
      <th scope="col" class="text-end">Actions</th>
    </tr></thead>
    <tbody id="jobs-body"><tr><td colspan="9" class="text-body-secondary">Loading…</td></tr></tbody>
  </table>
</div>
<nav class="d-flex align-items-center justify-content-between" aria-label="Pages of jobs">
  <button class="btn btn-outline-secondary btn-sm" id="page-newer" type="button" disabled>&larr; Newer</button>
  <span id="page-info" class="text-body-secondary small" aria-live="polite"></span>
  <button class="btn btn-outline-secondary btn-sm" id="page-older" type="button" disabled>Older &rarr;</button>
</nav>
<p class="small text-body-secondary mt-2" id="live-status" aria-live="polite"></p>

<div class="modal fade" id="bulk-confirm" tabindex="-1" aria-labelledby="bulk-confirm-title" aria-hidden="true">
  <div class="modal-dialog modal-dialog-scrollable">
    <div class="modal-content">
      <div class="modal-header">
        <h2 class="modal-title h5" id="bulk-confirm-title">Confirm</h2>
        <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Cancel"></button>
      </div>
      <div class="modal-body">
        <p id="bulk-confirm-text"></p>
        <ul id="bulk-confirm-list" class="small"></ul>
      </div>
      <div class="modal-footer">
        <button type="button" class="btn btn-secondary" data-bs-dismiss="modal">Cancel</button>
        <button type="button" class="btn btn-danger" id="bulk-confirm-go">Confirm</button>
      </div>
    </div>
  </div>
</div>
