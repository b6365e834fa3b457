% rebase('layout.tpl')
<h1 class="h3">{{title}}</h1>
<div class="alert alert-danger" role="alert">{{message}}</div>
<p><a href="{{root}}/web/">Back to the job definitions</a></p>
