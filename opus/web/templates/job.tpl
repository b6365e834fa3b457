% rebase('layout.tpl', styles=['static/job.css'], scripts=['lib/cytoscape/dist/cytoscape.min.js', 'lib/cytoscape-dagre/dist/cytoscape-dagre.min.js', 'static/preview.js', 'static/samp.js', 'static/provgraph.js', 'static/jobprogress.js', 'static/jobparams.js', 'static/job.js'])
%# Cytoscape.js injects a <style> unless an element with this id exists: job.css carries its one rule (CSP: no inline style).
<span id="__________cytoscape_stylesheet" hidden></span>
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
  <section id="job-progress" class="card mb-3 d-none" aria-labelledby="progress-title">
    <div class="card-body py-2">
      <h2 class="h6 mb-1" id="progress-title">Progress</h2>
      <p class="mb-1 small"><span id="progress-where" aria-live="polite"></span> <span id="progress-elapsed"></span></p>
      <div class="progress mb-2 d-none" role="progressbar" aria-label="Time used of the execution-duration limit"
           aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><div class="progress-bar" id="progress-bar"></div></div>
      <div class="row g-2">
        <div class="col-md-6"><h3 class="h6 small mb-1">Standard output (live)</h3><pre class="output tail" id="tail-stdout" tabindex="0" aria-live="off"></pre></div>
        <div class="col-md-6"><h3 class="h6 small mb-1">Standard error (live)</h3><pre class="output tail" id="tail-stderr" tabindex="0" aria-live="off"></pre></div>
      </div>
    </div>
  </section>
  <div class="row g-4">
    <div class="col-lg-5">
      <h2 class="h5">Properties</h2>
      <dl class="row small" id="job-properties"></dl>
      <div class="d-flex align-items-center gap-2"><h2 class="h5 m-0">Parameters</h2>
        <button class="btn btn-outline-primary btn-sm ms-auto d-none" id="params-edit" type="button">Edit</button></div>
      <table class="table table-sm small mt-2" id="params-table"><caption class="visually-hidden">Parameters</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
        <tbody id="job-parameters"></tbody></table>
      <form id="params-form" class="d-none mt-2 mb-3" novalidate></form>
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
    </div>
  </div>
  <section id="provenance-section" class="mt-2" aria-labelledby="provenance-title">
    <div class="d-flex flex-wrap align-items-end gap-2 mb-2">
      <h2 class="h5 m-0 me-auto" id="provenance-title">Provenance</h2>
      <div class="d-flex flex-wrap align-items-end gap-2 d-none prov-only" id="prov-controls"><div><label class="form-label small mb-0" for="prov-view">Show</label>
        <select class="form-select form-select-sm" id="prov-view">
          <option value="job">This job</option>
          <option value="BACK">Where its inputs came from (ProvSAP)</option>
          <option value="FORTH">What was made from its results (ProvSAP)</option>
        </select></div>
      <div><label class="form-label small mb-0" for="prov-depth">Depth</label>
        <select class="form-select form-select-sm" id="prov-depth">
          <option value="1" selected>1 step</option><option value="2">2 steps</option><option value="3">3 steps</option>
          <option value="5">5 steps</option><option value="ALL">All</option>
        </select></div>
      <button class="btn btn-outline-secondary btn-sm" id="prov-fit" type="button">Fit</button></div>
    </div>
    <div id="provenance" class="prov-box mb-2"><p class="text-body-secondary small p-2">Shown when the job has finished.</p></div>
    <div id="prov-details" class="small mb-2 d-none prov-only" aria-live="polite"><span class="text-body-secondary">Click a node or an arrow for its details; drag to move, scroll or pinch to zoom.</span></div>
    <details class="d-none prov-only mb-2"><summary class="small">The graph's nodes, as a list</summary><ul class="small list-unstyled ms-3 mb-0" id="prov-nodes"></ul></details>
    <p class="small" id="provenance-links"></p>
    <details id="prov-drawing" class="d-none prov-only"><summary class="small">Drawing for print (SVG, Graphviz)</summary><div id="prov-drawing-body"></div></details>
  </section>
</div>
