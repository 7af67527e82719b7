module local/httpserver

go 1.22
