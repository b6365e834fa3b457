% rebase('layout.tpl')
<div class="row justify-content-center">
  <div class="col-md-6 col-lg-5">
    <h1 class="h3 mb-3">Sign in to {{site_title}}</h1>
    % if message:
    <div class="alert alert-warning" role="alert" id="signin-message">{{message}}</div>
    % elif signed_out:
    <div class="alert alert-info" role="status">You are signed out.</div>
    % end
    % if oidc_url:
    <div class="card card-body shadow-sm mb-3">
      <a class="btn btn-primary" id="signin-oidc" href="{{oidc_url}}">Sign in with {{oidc_name}}</a>
    </div>
    <p class="text-body-secondary">Or with a user name and a password or token:</p>
    % end
    <form method="post" action="{{root}}/web/signin" class="card card-body shadow-sm" id="signin-form">
      <input type="hidden" name="_csrf" value="{{signin_csrf}}">
      <input type="hidden" name="next" value="{{next_url}}">
      <div class="mb-3">
        <label for="signin-name" class="form-label">User name</label>
        <input type="text" class="form-control" id="signin-name" name="name" value="{{name}}"
               autocomplete="username" required autofocus>
      </div>
      <div class="mb-3">
        <label for="signin-token" class="form-label">Password or token</label>
        <input type="password" class="form-control" id="signin-token" name="token"
               autocomplete="current-password" required aria-describedby="signin-token-help">
        <div id="signin-token-help" class="form-text">Your password, or the token your administrator
          gave you (<code>opus user add</code> prints it once).</div>
      </div>
      <button type="submit" class="btn btn-primary">Sign in</button>
    </form>
    % if registration:
    <p class="mt-3">No account yet? <a href="{{root}}/web/register">Register</a>.</p>
    % end
    % if anonymous_ok:
    <p class="mt-3 text-body-secondary">This server also accepts anonymous users:
      <a href="{{root}}/web/">continue without signing in</a>.</p>
    % end
  </div>
</div>
