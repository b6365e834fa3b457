% rebase('layout.tpl')
<div class="row justify-content-center">
  <div class="col-md-7 col-lg-6">
    <h1 class="h3 mb-3">Set your password</h1>
    % if done == "disabled":
    <div class="alert alert-info" role="status" id="reset-done">Your password is set. Your account
      <strong>{{name}}</strong> is not enabled yet: an administrator must enable it before you can sign in.</div>
    % else:
    % if message:
    <div class="alert alert-warning" role="alert" id="reset-message">{{message}}</div>
    % end
    <form method="post" action="{{root}}/web/reset" class="card card-body shadow-sm" id="reset-form">
      <input type="hidden" name="_csrf" value="{{form_csrf}}">
      <input type="hidden" name="code" value="{{code}}">
      <div class="mb-3">
        <label for="reset-name" class="form-label">User name</label>
        <input type="text" class="form-control" id="reset-name" name="name" value="{{name}}" required
               autocomplete="username" readonly>
      </div>
      <div class="mb-3">
        <label for="reset-password" class="form-label">New password</label>
        <input type="password" class="form-control" id="reset-password" name="password" required
               minlength="{{min_length}}" maxlength="1024" autocomplete="new-password"
               aria-describedby="reset-password-help" autofocus>
        <div id="reset-password-help" class="form-text">At least {{min_length}} characters.</div>
      </div>
      <div class="mb-3">
        <label for="reset-password2" class="form-label">New password again</label>
        <input type="password" class="form-control" id="reset-password2" name="password2" required
               minlength="{{min_length}}" maxlength="1024" autocomplete="new-password">
      </div>
      <button type="submit" class="btn btn-primary">Set the password</button>
    </form>
    % end
  </div>
</div>
