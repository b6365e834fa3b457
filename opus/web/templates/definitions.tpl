% rebase('layout.tpl', scripts=['static/definitions.js'])
<section class="opus-hero p-4 mb-4" aria-labelledby="home-title">
  <h1 class="h2 mb-3" id="home-title">{{site_title}}</h1>
  <div id="home-text">
  % if intro:
    % for paragraph in intro:
    <p class="home-paragraph">{{paragraph}}</p>
    % end
  % else:
    <p class="home-paragraph">This server runs data processing jobs for you. Each kind of job is a
      <em>job definition</em>: a script with its parameters, inputs and results. Submit a job from your
      browser or from a script, follow it while it runs, then preview and download its results and see
      where they came from (their provenance).</p>
  % end
  </div>
  <div class="d-flex flex-wrap gap-2 mt-3">
    <a class="btn btn-primary" href="#definitions-title">Start a job</a>
    <a class="btn btn-outline-secondary" href="{{root}}/web/jobs">My jobs</a>
    % if not user:
    <a class="btn btn-outline-secondary" href="{{root}}/web/signin">Sign in</a>
    % end
  </div>
</section>

<div class="row g-4 mb-4">
  <section class="col-lg-6" aria-labelledby="start-title">
    <h2 class="h4" id="start-title">How to start</h2>
    <ol class="opus-steps">
      <li>Choose a job definition below and press <strong>New job</strong>.</li>
      <li>Fill in its form: every value is checked before anything is sent.</li>
      <li><strong>Create and run</strong>, then follow the job on its page: its phase, its output while it
        runs, then its results with previews and their provenance.</li>
      <li>Find your jobs again under <a href="{{root}}/web/jobs">Jobs</a>: filter them, abort or delete
        several at once.</li>
    </ol>
  </section>
  <section class="col-lg-6" aria-labelledby="api-title">
    <h2 class="h4" id="api-title">From scripts and pipelines</h2>
    <p class="mb-2">The same service is an <a href="https://www.ivoa.net/documents/UWS/">IVOA UWS 1.1</a>
      REST API, for curl, Python (PyVO) or your pipelines:</p>
    <ul class="mb-2" id="api-links">
      <li><a href="{{root}}/openapi.json">The API description (OpenAPI 3, JSON)</a></li>
      <li><a href="{{root}}/jdl">The job definitions (JSON)</a>, each also as VOTable and WADL</li>
      <li><a href="{{root}}/capabilities">VOSI capabilities</a> and
        <a href="{{root}}/availability">availability</a></li>
      <li><a href="{{root}}/web/static/uws.js">uws.js</a>, the JavaScript client these pages use</li>
    </ul>
    <pre class="api-example" aria-label="An example with curl"><code>curl -u NAME:TOKEN -d PHASE=RUN {{api_base}}/rest/DEFINITION</code></pre>
  </section>
</div>

<div class="d-flex flex-wrap align-items-baseline justify-content-between gap-2 mb-3">
  <h2 class="h4 m-0" id="definitions-title" tabindex="-1">What you can run here</h2>
  <a class="btn btn-outline-secondary btn-sm" href="{{root}}/web/jobs">All my jobs</a>
</div>
<div id="definitions" class="row row-cols-1 row-cols-md-2 row-cols-xl-3 g-3" aria-busy="true">
  <p class="text-body-secondary">Loading…</p>
</div>
