from weavenet.cli.containers import docker_error


def test_the_line_that_says_what_went_wrong_is_picked_from_docker_run_stderr():
    pull = ("Unable to find image 'ubuntu:latest' locally\n"
            "docker: Error response from daemon: pull access denied for ubuntu.\n\n"
            "Run 'docker run --help' for more information\n")
    want = "docker: Error response from daemon: pull access denied for ubuntu."
    assert docker_error(pull) == want
    flag = ("unknown flag: --bogus\n\nUsage:  docker run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
            "Run 'docker run --help' for more information\n")
    assert docker_error(flag) == "unknown flag: --bogus"
    warned = "WARNING: IPv4 forwarding is disabled. Networking will not work.\nboom\n"
    assert docker_error(warned) == "boom"
    assert docker_error("") == ""
