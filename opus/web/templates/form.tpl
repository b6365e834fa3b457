% rebase('layout.tpl', scripts=['static/jobform.js'])
<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-2">
  <h1 class="h3 m-0">{{title}}</h1>
  <a class="btn btn-outline-secondary btn-sm" href="{{root}}/web/jobs/{{jobname}}">Jobs of {{jobname}}</a>
</div>
<p id="definition-description" class="text-body-secondary"></p>
<form id="job-form" novalidate data-jobname="{{jobname}}" data-from="{{from_job}}" aria-busy="true">
  <div id="form-general" role="alert" class="alert alert-danger d-none"></div>
  <fieldset id="required-fields" class="mb-3"><legend class="h5">Parameters</legend></fieldset>
  <div id="optional-block" class="mb-3 d-none">
    <button class="btn btn-link px-0" type="button" id="toggle-optional" aria-expanded="false"
            aria-controls="optional-fields">Show optional parameters</button>
    <fieldset id="optional-fields" class="d-none"><legend class="visually-hidden">Optional parameters</legend></fieldset>
  </div>
  <details class="mb-3" id="control-block">
    <summary class="mb-2">Job control (run id, duration, destruction, cluster)</summary>
    <fieldset id="control-fields"><legend class="visually-hidden">Job control parameters</legend></fieldset>
  </details>
  <div class="d-flex flex-wrap gap-2">
    <button type="submit" class="btn btn-primary" id="create-run" data-run="1">Create and run</button>
    <button type="submit" class="btn btn-outline-primary" id="create" data-run="">Create</button>
  </div>
</form>
