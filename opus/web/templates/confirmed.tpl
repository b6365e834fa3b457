% rebase('layout.tpl')
<h1 class="h3">{{title}}</h1>
<div class="alert alert-success" role="status" id="confirmed">Thank you: <strong>{{email}}</strong> is confirmed.
  OPUS sends there the notifications you ask for (a job's end, a daily digest).</div>
<p class="d-flex flex-wrap gap-3"><a href="{{root}}/web/profile">Your profile</a>
  <a href="{{root}}/web/jobs">Your jobs</a></p>
