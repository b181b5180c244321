# Shared by the stand-in programs of tests/image_build.rs: a call log and image stores under $STANDIN_STATE.
# Bash builtins only: the tests run them with nothing else on PATH.

log_call() {
    printf '%s\n' "$*" >>"$STANDIN_STATE/calls.log"
}

unsupported() {
    printf 'stand-in %s: unsupported call: %s\n' "$1" "${*:2}" >&2
    exit 64
}

# Stores image $2 in store $1 (node, host-docker, podman) under a new ID, replacing an older image of that name.
store_image() {
    local store=$STANDIN_STATE/stores/$1 ref=$2 line out="" n=0
    [[ -f $STANDIN_STATE/counter ]] && n=$(<"$STANDIN_STATE/counter")
    n=$((n + 1))
    printf '%s' "$n" >"$STANDIN_STATE/counter"
    if [[ -f $store ]]; then
        while IFS= read -r line; do
            [[ ${line%% *} == "$ref" ]] || out+="$line"$'\n'
        done <"$store"
    fi
    printf -v line '%s sha256:%064x' "$ref" "$n"
    printf '%s%s\n' "$out" "$line" >"$store"
}

# Prints the ID of image $2 in store $1; fails when it is not there.
image_id() {
    local store=$STANDIN_STATE/stores/$1 line
    [[ -f $store ]] || return 1
    while IFS= read -r line; do
        if [[ ${line%% *} == "$2" ]]; then
            printf '%s\n' "${line#* }"
            return 0
        fi
    done <"$store"
    return 1
}

# The arguments of a build: sets BUILD_FILE, BUILD_TAG and BUILD_DIR, and checks the file is there.
parse_build() {
    BUILD_FILE=Dockerfile BUILD_TAG="" BUILD_DIR=""
    while (($#)); do
        case $1 in
        -f | --file) BUILD_FILE=$2 && shift 2 ;;
        -t | --tag) BUILD_TAG=$2 && shift 2 ;;
        --load) shift ;;
        --builder) shift 2 ;;
        -*) printf 'unknown flag: %s\n' "$1" >&2 && exit 125 ;;
        *) BUILD_DIR=$1 && shift ;;
        esac
    done
    if [[ ! -f $BUILD_DIR/$BUILD_FILE ]]; then
        printf 'unable to prepare context: %s not found in %s\n' "$BUILD_FILE" "$BUILD_DIR" >&2
        exit 1
    fi
}

# True when the file needs BuildKit (`RUN --mount`): the legacy builder refuses it.
needs_buildkit() {
    local line
    while IFS= read -r line; do
        [[ $line == *"--mount="* ]] && return 0
    done <"$BUILD_DIR/$BUILD_FILE"
    return 1
}

# BuildKit pulls the frontend a `# syntax=` line names, from Docker Hub, on every cold builder: logged.
pull_frontend() {
    local line
    while IFS= read -r line; do
        [[ $line == "# syntax="* ]] && log_call "builder pulled frontend ${line#"# syntax="}"
    done <"$BUILD_DIR/$BUILD_FILE"
    return 0
}
