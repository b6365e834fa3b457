<!doctype html>
<html lang="en" data-bs-theme="light">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{title}} · {{site_title}}</title>
<link rel="icon" href="{{root}}/web/static/favicon.svg" type="image/svg+xml">
<script src="{{root}}/web/static/theme.js"></script>
<link rel="stylesheet" href="{{root}}/web/lib/bootstrap/dist/css/bootstrap.min.css">
% for css in get('styles', []):
<link rel="stylesheet" href="{{root}}/web/{{css}}">
% end
<link rel="stylesheet" href="{{root}}/web/static/opus.css">
<meta name="opus-root" content="{{root}}">
<meta name="csrf-token" content="{{csrf}}">
<meta name="opus-user" content="{{user or ''}}">
<meta name="opus-admin" content="{{'1' if admin else ''}}">
<meta name="opus-editor" content="{{'1' if get('editor') else ''}}">
<script src="{{root}}/web/lib/bootstrap/dist/js/bootstrap.bundle.min.js" defer></script>
<script src="{{root}}/web/static/uws.js" defer></script>
<script src="{{root}}/web/static/ui.js" defer></script>
% for js in get('scripts', []):
<script src="{{root}}/web/{{js}}" defer></script>
% end
</head>
<body class="d-flex flex-column min-vh-100">
<a class="visually-hidden-focusable position-absolute p-2 bg-body" href="#main">Skip to the content</a>
<nav class="navbar navbar-expand-md opus-navbar mb-3" data-bs-theme="dark" aria-label="Main">
  <div class="container">
    <a class="navbar-brand d-flex align-items-center gap-2 fw-semibold" href="{{root}}/web/" id="site-brand">
      % if logo:
      <img src="{{logo}}" alt="" class="opus-logo" id="site-logo" referrerpolicy="no-referrer">
      % else:
      <img src="{{root}}/web/static/favicon.svg" alt="" class="opus-logo">
      % end
      <span id="site-title">{{site_title}}</span>
    </a>
    <button class="navbar-toggler" type="button" data-bs-toggle="collapse" data-bs-target="#opus-nav"
            aria-controls="opus-nav" aria-expanded="false" aria-label="Show the menu">
      <span class="navbar-toggler-icon"></span>
    </button>
    <div class="collapse navbar-collapse" id="opus-nav">
      <ul class="navbar-nav me-auto">
        <li class="nav-item"><a class="nav-link{{" active" if page == "definitions" else ""}}" href="{{root}}/web/"{{!' aria-current="page"' if page == "definitions" else ''}}>Home</a></li>
        <li class="nav-item"><a class="nav-link{{" active" if page == "jobs" else ""}}" href="{{root}}/web/jobs"{{!' aria-current="page"' if page == "jobs" else ''}}>Jobs</a></li>
        % if user:
        <li class="nav-item"><a class="nav-link{{" active" if page == "shared" else ""}}" href="{{root}}/web/shared"{{!' aria-current="page"' if page == "shared" else ''}}>Shared with me</a></li>
        % end
        <li class="nav-item"><a class="nav-link{{" active" if page == "editor" else ""}}" href="{{root}}/web/editor"{{!' aria-current="page"' if page == "editor" else ''}}>Editor</a></li>
        % if admin:
        <li class="nav-item"><a class="nav-link{{" active" if page == "admin" else ""}}" href="{{root}}/web/admin"{{!' aria-current="page"' if page == "admin" else ''}}>Admin</a></li>
        % end
      </ul>
      <div class="d-flex flex-wrap align-items-center gap-2 py-2 py-md-0">
        <button class="btn btn-outline-light btn-sm" type="button" id="theme-toggle" aria-label="Theme (change)">
          <span class="theme-icon" aria-hidden="true">&#9680;</span>
        </button>
        % if user and signed_in:
        <a class="navbar-text link-light" id="opus-user" href="{{root}}/web/profile"
           title="Your profile: password, token, service tokens">{{user}}{{' (admin)' if admin else ''}}</a>
        <form method="post" action="{{root}}/web/signout" class="m-0">
          <input type="hidden" name="_csrf" value="{{csrf}}">
          <button class="btn btn-outline-light btn-sm" type="submit">Sign out</button>
        </form>
        % elif user:
        <span class="navbar-text" id="opus-user">{{user}}{{' (admin)' if admin else ''}}</span>
        % else:
        <span class="navbar-text">anonymous</span>
        <a class="btn btn-outline-light btn-sm" href="{{root}}/web/signin">Sign in</a>
        % end
      </div>
    </div>
  </div>
</nav>
<main id="main" class="container pb-5 flex-grow-1" tabindex="-1">
<div id="alerts" aria-live="polite"></div>
{{!base}}
</main>
<footer class="opus-footer border-top py-3 small">
  <div class="container d-flex flex-wrap gap-3 justify-content-between">
    <span>{{site_title}}{{' · powered by OPUS' if site_title != 'OPUS' else ''}}, an IVOA UWS 1.1 job server</span>
    <span class="d-flex flex-wrap gap-3">
      <a class="link-body-emphasis" href="{{root}}/openapi.json">API (OpenAPI)</a>
      <a class="link-body-emphasis" href="{{root}}/capabilities">Capabilities</a>
      <a class="link-body-emphasis" href="{{root}}/availability">Availability</a>
    </span>
  </div>
</footer>
</body>
</html>
