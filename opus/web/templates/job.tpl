% rebase('layout.tpl', scripts=['static/preview.js', 'static/job.js'])
<div id="job" data-jobname="{{jobname}}" data-job-id="{{job_id}}">
  <nav aria-label="breadcrumb"><ol class="breadcrumb mb-2">
    <li class="breadcrumb-item"><a href="{{root}}/web/jobs">Jobs</a></li>
    <li class="breadcrumb-item"><a href="{{root}}/web/jobs/{{jobname}}">{{jobname}}</a></li>
    <li class="breadcrumb-item active" aria-current="page">{{job_id}}</li>
  </ol></nav>
  <div class="d-flex flex-wrap align-items-center gap-2 mb-3">
    <h1 class="h3 m-0 me-2">Job <code>{{job_id}}</code></h1>
    <span id="job-phase" class="badge fs-6" aria-live="polite"></span>
    <div class="ms-auto d-flex flex-wrap gap-2" id="job-actions">
      <button class="btn btn-success btn-sm d-none" id="job-run" type="button">Start</button>
      <button class="btn btn-warning btn-sm d-none" id="job-abort" type="button">Abort</button>
      <a class="btn btn-outline-primary btn-sm" id="job-again" href="{{root}}/web/new/{{jobname}}?from={{job_id}}">Run again</a>
      <button class="btn btn-outline-danger btn-sm" id="job-delete" type="button">Delete</button>
    </div>
  </div>
  <div id="job-error" class="alert alert-danger d-none" role="alert"></div>
  <div class="row g-4">
    <div class="col-lg-5">
      <h2 class="h5">Properties</h2>
      <dl class="row small" id="job-properties"></dl>
      <h2 class="h5">Parameters</h2>
      <table class="table table-sm small"><caption class="visually-hidden">Parameters</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
        <tbody id="job-parameters"></tbody></table>
    </div>
    <div class="col-lg-7">
      <h2 class="h5">Results</h2>
      <ul class="list-group mb-3" id="job-results"><li class="list-group-item text-body-secondary">None yet</li></ul>
      <section id="preview" class="mb-3 d-none" aria-labelledby="preview-title">
        <div class="d-flex align-items-center"><h3 class="h6 m-0" id="preview-title">Preview</h3>
          <button type="button" class="btn-close ms-auto" id="preview-close" aria-label="Close the preview"></button></div>
        <div id="preview-body" class="mt-2"></div>
      </section>
      <details class="mb-2" id="stdout-block"><summary>Standard output</summary><pre class="output" id="job-stdout" tabindex="0"></pre></details>
      <details class="mb-3" id="stderr-block"><summary>Standard error</summary><pre class="output" id="job-stderr" tabindex="0"></pre></details>
      <h2 class="h5">Provenance</h2>
      <div id="provenance" class="mb-2"><p class="text-body-secondary small">Shown when the job has finished.</p></div>
      <p class="small" id="provenance-links"></p>
    </div>
  </div>
</div>
