% rebase('layout.tpl', scripts=['static/formcheck.js', 'static/jobform.js'])
<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-2">
  <h1 class="h3 m-0">{{title}}</h1>
  <a class="btn btn-outline-secondary btn-sm" href="{{root}}/web/jobs/{{jobname}}">Jobs of {{jobname}}</a>
</div>
<p id="definition-description" class="text-body-secondary opus-lead"></p>
<form id="job-form" novalidate data-jobname="{{jobname}}" data-from="{{from_job}}" aria-busy="true">
  <div id="form-general" role="alert" class="alert alert-danger d-none" tabindex="-1"></div>
  <fieldset id="main-fields" class="opus-fields mb-3"><legend class="h5">Parameters</legend></fieldset>
  <div id="more-block" class="mb-3 d-none">
    <button class="btn btn-link px-0 mb-2" type="button" id="toggle-optional" aria-expanded="false"
            aria-controls="more-fields">Show more parameters</button>
    <fieldset id="more-fields" class="opus-fields d-none"><legend class="visually-hidden">More parameters</legend></fieldset>
  </div>
  <fieldset id="slurm-fields" class="opus-fields mb-3 d-none"><legend class="h5">Cluster resources (SLURM)</legend></fieldset>
  <details class="mb-3" id="control-block">
    <summary class="mb-2">Job control (run id, duration, destruction)</summary>
    <fieldset id="control-fields" class="opus-fields"><legend class="visually-hidden">Job control parameters</legend></fieldset>
  </details>
  <div class="d-flex flex-wrap gap-2">
    <button type="submit" class="btn btn-primary" id="create-run" data-run="1">Create and run</button>
    <button type="submit" class="btn btn-outline-primary" id="create" data-run="">Create</button>
  </div>
</form>
