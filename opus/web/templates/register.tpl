% rebase('layout.tpl')
<div class="row justify-content-center">
  <div class="col-md-7 col-lg-6">
    <h1 class="h3 mb-3">Register</h1>
    % if done == "approval":
    <div class="alert alert-info" role="status" id="register-done">Your account <strong>{{name}}</strong> is
      registered. An administrator must approve it before you can sign in.</div>
    % elif mode == "off":
    <div class="alert alert-warning" role="alert" id="register-message">Self-registration is off on this server:
      ask an administrator for an account.</div>
    % else:
    % if message:
    <div class="alert alert-warning" role="alert" id="register-message">{{message}}</div>
    % end
    <form method="post" action="{{root}}/web/register" class="card card-body shadow-sm" id="register-form">
      <input type="hidden" name="_csrf" value="{{form_csrf}}">
      <div class="mb-3">
        <label for="register-name" class="form-label">User name</label>
        <input type="text" class="form-control" id="register-name" name="name" value="{{name}}" required
               autocomplete="username" maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}"
               aria-describedby="register-name-help" autofocus>
        <div id="register-name-help" class="form-text">Letters, digits, <code>_ . @ -</code>; at most 64.</div>
      </div>
      <div class="mb-3">
        <label for="register-email" class="form-label">E-mail (optional)</label>
        <input type="email" class="form-control" id="register-email" name="email" value="{{email}}"
               autocomplete="email" maxlength="254">
      </div>
      <div class="mb-3">
        <label for="register-password" class="form-label">Password</label>
        <input type="password" class="form-control" id="register-password" name="password" required
               minlength="{{min_length}}" maxlength="1024" autocomplete="new-password"
               aria-describedby="register-password-help">
        <div id="register-password-help" class="form-text">At least {{min_length}} characters.</div>
      </div>
      <div class="mb-3">
        <label for="register-password2" class="form-label">Password again</label>
        <input type="password" class="form-control" id="register-password2" name="password2" required
               minlength="{{min_length}}" maxlength="1024" autocomplete="new-password">
      </div>
      % if mode == "approved":
      <p class="form-text" id="register-approval-note">An administrator approves new accounts before they can be used.</p>
      % end
      <button type="submit" class="btn btn-primary">Register</button>
    </form>
    <p class="mt-3"><a href="{{root}}/web/signin">I have an account: sign in</a></p>
    % end
  </div>
</div>
