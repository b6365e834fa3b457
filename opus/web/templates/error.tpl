% rebase('layout.tpl')
<h1 class="h3">{{title}}</h1>
<div class="alert alert-danger" role="alert">{{message}}</div>
<p class="d-flex flex-wrap gap-3"><a href="{{root}}/web/">Back to the home page</a>
  <a href="{{root}}/web/jobs">Your jobs</a></p>
