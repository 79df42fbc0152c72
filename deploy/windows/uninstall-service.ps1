<#
.SYNOPSIS
  Removes the TLS security gateway service and its firewall rules. The data folder (users,
  HMAC key, local CA devices trust, logs, gateway.yaml) is kept unless -RemoveData is given.
  Safe to run again: what is already gone is skipped; any other failure stops the script.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = "C:\Program Files\TlsGateway",
    [string]$DataDir = "C:\ProgramData\TlsGateway",
    [switch]$RemoveData
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version 3
$ServiceId = "tls-gateway"
$Wrapper = Join-Path $InstallDir "$ServiceId.exe"

function Invoke-Native {
    # Same as in install-service.ps1: a program's failure stops the script with what it printed.
    param(
        [Parameter(Mandatory = $true)][string]$What,
        [Parameter(Mandatory = $true)][scriptblock]$Command,
        [int[]]$Allowed = @(0)
    )
    $ErrorActionPreference = "Continue"
    $global:LASTEXITCODE = 0
    $output = @(& $Command 2>&1 | ForEach-Object { "$_" })
    $code = $LASTEXITCODE
    if ($Allowed -notcontains $code) {
        $output | ForEach-Object { Write-Host "    $_" }
        throw "$What failed (exit code $code). Nothing after this step was done; fix the cause and run the script again."
    }
    return $output
}

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Run this script in an elevated PowerShell (Run as administrator)."
}

if ($null -ne (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue)) {
    Stop-Service -Name $ServiceId -ErrorAction Stop
    if (Test-Path $Wrapper) {
        Invoke-Native "removing the service with $Wrapper" { & $Wrapper uninstall } | Out-Null
    } else {
        Invoke-Native "removing the service" { sc.exe delete $ServiceId } | Out-Null
    }
    Write-Host "Removed the service $ServiceId."
}
foreach ($rule in @("TLS gateway (bases)", "Legacy server (direct access blocked)")) {
    # netsh answers 1 when no rule has that name: already removed.
    Invoke-Native "looking up the firewall rule '$rule'" { netsh advfirewall firewall show rule name="$rule" } -Allowed 0, 1 | Out-Null
    if ($LASTEXITCODE -eq 0) {
        Invoke-Native "removing the firewall rule '$rule'" { netsh advfirewall firewall delete rule name="$rule" } | Out-Null
        Write-Host "Removed the firewall rule '$rule'."
    }
}
if (Test-Path $InstallDir) {
    Remove-Item -Recurse -Force $InstallDir
}
if ($RemoveData) {
    if (Test-Path $DataDir) { Remove-Item -Recurse -Force $DataDir }
    Write-Host "Removed $DataDir. Devices enrolled with its local CA must be enrolled again."
} else {
    Write-Host "Kept $DataDir (state, logs, configuration)."
}
