-- expect: deadlock with an empty select
channel.select{}
